-- History entries are capped so a message that fails for a day does not grow without bound;
-- the newest `cap` entries are kept.
CREATE OR REPLACE FUNCTION outbox.history_push(history jsonb, entry jsonb, cap integer)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN jsonb_array_length(history) < cap THEN history || jsonb_build_array(entry)
    ELSE (
      SELECT coalesce(jsonb_agg(t.e ORDER BY t.i), '[]'::jsonb)
      FROM jsonb_array_elements(history || jsonb_build_array(entry)) WITH ORDINALITY AS t(e, i)
      WHERE t.i > jsonb_array_length(history) + 1 - cap
    )
  END
$$;

-- Store one update that already passed the rules, in its final form; returns the message id.
-- The same dedup_key returns the first message's id and stores nothing. NOTIFY wakes the workers
-- at commit. The Python API calls this directly (it checks the same rules before, in-process);
-- every other caller goes through outbox.enqueue, which checks them here first.
CREATE OR REPLACE FUNCTION outbox.insert_message(payload jsonb, dedup_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
  new_id bigint;
BEGIN
  INSERT INTO outbox.messages AS m (payload, dedup_key)
  VALUES (insert_message.payload, insert_message.dedup_key)
  ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
  RETURNING m.id INTO new_id;

  IF new_id IS NULL THEN
    -- A row with this key exists (committed, or committed by the transaction we waited on).
    SELECT m.id INTO new_id FROM outbox.messages AS m WHERE m.dedup_key = insert_message.dedup_key;
    IF new_id IS NULL THEN
      -- Only under REPEATABLE READ or SERIALIZABLE can the winner be invisible here.
      RAISE EXCEPTION USING
        ERRCODE = 'serialization_failure',
        MESSAGE = format('dedup_key %L was enqueued by a concurrent transaction; retry',
                         insert_message.dedup_key);
    END IF;
    RETURN new_id;
  END IF;

  -- Identical notifications in one transaction are folded into one, so bulk enqueues stay cheap.
  PERFORM pg_notify('outbox', '');
  RETURN new_id;
END
$$;

-- The enqueue API for any service in any language: call it inside your own transaction.
-- Checks the update against Ravelin's rules (raising SQLSTATE 22023 with every bad field named),
-- then stores it as outbox.insert_message does.
CREATE OR REPLACE FUNCTION outbox.enqueue(payload jsonb, dedup_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  problems text[];
BEGIN
  problems := outbox.validate_update(enqueue.payload);
  IF cardinality(problems) > 0 THEN
    RAISE EXCEPTION USING
      ERRCODE = 'invalid_parameter_value',
      MESSAGE = format(
        'invalid registration update (%s %s): %s',
        cardinality(problems),
        CASE WHEN cardinality(problems) = 1 THEN 'problem' ELSE 'problems' END,
        array_to_string(problems, '; ')
      ),
      HINT = 'Fix the fields named above; nothing was stored.';
  END IF;
  RETURN outbox.insert_message(outbox.normalize_update(enqueue.payload), enqueue.dedup_key);
END
$$;
