-- Undo revision 0009: revision 0007's two-argument enqueue functions, and no trace context.

SET LOCAL lock_timeout = '5s';

DROP FUNCTION outbox.enqueue(jsonb, text, jsonb);
DROP FUNCTION outbox.insert_message(jsonb, text, jsonb);

CREATE FUNCTION outbox.insert_message(payload jsonb, dedup_key text DEFAULT NULL)
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

  IF insert_message.dedup_key IS NULL THEN
    INSERT INTO outbox.messages AS m (payload) VALUES (insert_message.payload)
    RETURNING m.id INTO new_id;
  ELSE
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
  END IF;

  -- At most one notifying transaction per interval cluster-wide (revision 0006).
  IF outbox.claim_wakeup() THEN
    PERFORM pg_notify('outbox', '');
  END IF;
  RETURN new_id;
END
$$;

-- The enqueue API for any service in any language (revision 0007's).
CREATE FUNCTION outbox.enqueue(payload jsonb, dedup_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, outbox, pg_temp
AS $$
DECLARE
  problems text[];
BEGIN
  IF NOT coalesce(outbox.is_plainly_valid(enqueue.payload), false) THEN
    problems := outbox.update_problems(enqueue.payload);
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
  END IF;
  RETURN outbox.insert_message(outbox.normalize_update(enqueue.payload), enqueue.dedup_key);
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'outbox_producer') THEN
    GRANT EXECUTE ON FUNCTION outbox.enqueue(jsonb, text) TO outbox_producer;
    GRANT EXECUTE ON FUNCTION outbox.insert_message(jsonb, text) TO outbox_producer;
  END IF;
END
$$;

ALTER TABLE outbox.messages DROP COLUMN trace_context;
