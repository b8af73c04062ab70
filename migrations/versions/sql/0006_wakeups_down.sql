-- Undo revision 0006: every enqueue notifies again (revision 0004's insert_message).

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

DROP FUNCTION outbox.claim_wakeup(bigint);
DROP SEQUENCE outbox.last_wakeup_ms;
