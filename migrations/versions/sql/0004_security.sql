-- Functions that run as their owner: revision 0004 (the row rules are beside, see below).
--
-- The row constraints and the repair of rows they would refuse are in 0004_roles.py (added
-- NOT VALID under a short lock timeout) and 0004_repair.sql (run before validating them).

-- Store one update that already passed the rules, in its final form; returns the message id.
-- The Python API calls this (it checks every rule in-process first, so the full PL/pgSQL check
-- is not repeated: it would more than double an enqueue's cost); every other caller goes through
-- outbox.enqueue. A producer may call it directly, so it still refuses what would break the
-- worker or Ravelin's first check: a body that is not an object, or one without a boolean
-- registration.success and a whole-number timestamp.
-- SECURITY DEFINER: producers hold no privilege on the table; the pinned search_path keeps a
-- caller's own schemas (or pg_temp objects) from standing in for ours while it runs as owner.
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

  -- Identical notifications in one transaction are folded into one, so bulk enqueues stay cheap.
  PERFORM pg_notify('outbox', '');
  RETURN new_id;
END
$$;

-- The enqueue API for any service in any language, now run as the owner (see above).
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

-- Nobody calls an outbox function by default: each role below is granted what its job needs.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox FROM PUBLIC;
