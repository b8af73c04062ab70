-- The producer's trace context with each message: revision 0009.
--
-- A nullable column without a default is a change to the catalog alone: no table rewrite, no
-- scan (the revision adds it through migration_scripts.locked(), which waits for its brief lock
-- at most 200 ms at a time). This file runs after it.
--
-- enqueue and insert_message get overloads with a third argument: the caller's W3C trace context
-- as a JSON object ({"traceparent", "tracestate"}). Expand only: the two-argument functions stay
-- exactly as revision 0007 made them, so every caller of the release before is unchanged, and
-- without defaults on the new overloads a two-argument call can only mean the old function (a
-- defaulted third argument would make it ambiguous). A traced call passes all three:
-- outbox.enqueue(payload, NULL, trace_context) when there is no dedup key.

CREATE FUNCTION outbox.insert_message(payload jsonb, dedup_key text, trace_context jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, outbox, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  new_id bigint;
  kept jsonb;
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

  -- The trace context is kept only as W3C Trace Context names it: a well-formed traceparent and
  -- a tracestate of at most 512 bytes. Anything else (baggage, which may carry personal data, a
  -- malformed value, a huge one) is dropped, never refused: tracing must not cost a registration.
  -- One expression, evaluated only for a call that passes a context (each PL/pgSQL step costs).
  -- The traceparent rule is W3C's 2-32-16-2 lowercase hex digits between dashes, written as a
  -- length, a pattern without counted repetitions and the dashes' places: the same rule as the
  -- regular expression with {32} and {16}, which costs ~5 µs in PostgreSQL's engine (this, ~1).
  IF insert_message.trace_context IS NOT NULL THEN
    kept := CASE
      WHEN octet_length(insert_message.trace_context ->> 'traceparent') = 55
       AND (insert_message.trace_context ->> 'traceparent')
           ~ '^[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$'
       AND substr(insert_message.trace_context ->> 'traceparent', 3, 1) = '-'
       AND substr(insert_message.trace_context ->> 'traceparent', 36, 1) = '-'
       AND substr(insert_message.trace_context ->> 'traceparent', 53, 1) = '-'
      THEN jsonb_strip_nulls(jsonb_build_object(
        'traceparent', insert_message.trace_context -> 'traceparent',
        'tracestate', CASE
          WHEN jsonb_typeof(insert_message.trace_context -> 'tracestate') = 'string'
               AND octet_length(insert_message.trace_context ->> 'tracestate') <= 512
          THEN insert_message.trace_context -> 'tracestate'
        END))
    END;
  END IF;

  IF insert_message.dedup_key IS NULL THEN
    INSERT INTO outbox.messages AS m (payload, trace_context) VALUES (insert_message.payload, kept)
    RETURNING m.id INTO new_id;
  ELSE
    INSERT INTO outbox.messages AS m (payload, dedup_key, trace_context)
    VALUES (insert_message.payload, insert_message.dedup_key, kept)
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

-- The enqueue API for any service in any language: validate, normalize, store (as in revision
-- 0007), with the caller's trace context when it passes one.
CREATE FUNCTION outbox.enqueue(payload jsonb, dedup_key text, trace_context jsonb)
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
  RETURN outbox.insert_message(
    outbox.normalize_update(enqueue.payload), enqueue.dedup_key, enqueue.trace_context
  );
END
$$;

-- Revision 0004's rule: nobody calls an outbox function by default; producers call the new
-- overloads too.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'outbox_producer') THEN
    GRANT EXECUTE ON FUNCTION outbox.enqueue(jsonb, text, jsonb) TO outbox_producer;
    GRANT EXECUTE ON FUNCTION outbox.insert_message(jsonb, text, jsonb) TO outbox_producer;
  END IF;
END
$$;
