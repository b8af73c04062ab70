-- Undo revision 0007: the detailed check alone again, and revision 0006's insert_message.

-- Store one update that already passed the rules, in its final form; returns the message id.
-- As in revision 0004, except that it notifies only when outbox.claim_wakeup() says so.
CREATE OR REPLACE FUNCTION outbox.insert_message(payload jsonb, dedup_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, outbox, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  new_id bigint;
BEGIN
  IF jsonb_typeof(insert_message.payload) IS DISTINCT FROM 'object'
     OR jsonb_typeof(insert_message.payload #> '{registration,success}') IS DISTINCT FROM 'boolean'
     OR jsonb_typeof(insert_message.payload -> 'timestamp') IS DISTINCT FROM 'number'
  THEN
    RAISE EXCEPTION USING
      ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'invalid registration update: it must be an object with a numeric timestamp '
                'and a boolean registration.success',
      HINT = 'Call outbox.enqueue(payload, dedup_key), which names every bad field.';
  END IF;

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
        MESSAGE = 'the dedup_key was enqueued by a concurrent transaction; retry';
    END IF;
    RETURN new_id;
  END IF;

  -- At most one notifying transaction per interval cluster-wide (revision 0006).
  IF outbox.claim_wakeup() THEN
    PERFORM pg_notify('outbox', '');
  END IF;
  RETURN new_id;
END
$$;

-- The enqueue API as revision 0004 made it.
CREATE OR REPLACE FUNCTION outbox.enqueue(payload jsonb, dedup_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, outbox, pg_temp
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

DROP FUNCTION outbox.validate_update(jsonb);
ALTER FUNCTION outbox.update_problems(jsonb) RENAME TO validate_update;
DROP FUNCTION outbox.is_plainly_valid(jsonb);
DROP FUNCTION outbox.is_plain_person(jsonb);
DROP FUNCTION outbox.is_plain_location(jsonb);
DROP FUNCTION outbox.iso_country_code_set();
DROP FUNCTION outbox.is_coordinate_or_null(jsonb, numeric);
DROP FUNCTION outbox.is_id_or_null(jsonb);
DROP FUNCTION outbox.is_epoch_ms_or_null(jsonb);
DROP FUNCTION outbox.is_text_like_or_null(jsonb, text);
DROP FUNCTION outbox.is_type_or_null(jsonb, text);
