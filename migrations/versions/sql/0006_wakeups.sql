-- Wake-ups that do not serialize the application's commits: revision 0006.
--
-- Until now every enqueue queued a NOTIFY. A transaction that has queued one takes a lock on the
-- whole cluster at commit and holds it through the WAL flush, so every enqueueing transaction,
-- in every database of the server, committed one at a time (half the signups per second at 8
-- connections; bench/README.md). Now at most one enqueueing transaction per interval (10 ms)
-- notifies; the others commit as a plain INSERT would. Only transactions that notify take the
-- lock, so the few that do (at most 100 a second, whatever the enqueue rate) hardly ever meet
-- each other, and a worker is still woken within about 10 ms while updates flow. A worker that a NOTIFY woke keeps polling quickly
-- while rows keep coming (outbox_worker/rhythm.py), so the rows of the transactions that did not
-- notify are claimed within milliseconds too; OUTBOX_POLL_INTERVAL bounds the rare worst case
-- (the one notifying transaction rolled back, or committed long after its enqueue).
--
-- The throttle's state is the time of the last NOTIFY, in epoch milliseconds, kept in a sequence
-- rather than a row: sequences are not transactional, so reading and setting it never waits on
-- another transaction and never raises a serialization failure under REPEATABLE READ or
-- SERIALIZABLE (a throttle row taken FOR UPDATE SKIP LOCKED, as pgmq does, fails there whenever
-- another transaction updated the row after the caller's snapshot was taken). A transaction-level
-- advisory lock, tried without waiting, elects the one notifier among transactions that see the
-- interval expire at the same moment; it is held until that transaction ends.
-- pg_sequence_last_value() is NULL until the sequence is first set: set it to 0 ("long ago")
-- now, so the first enqueue reads a number and notifies.
CREATE SEQUENCE IF NOT EXISTS outbox.last_wakeup_ms AS bigint MINVALUE 0 START 0;
SELECT setval('outbox.last_wakeup_ms', 0, true);

-- Whether the calling transaction should NOTIFY: true at most once per `interval_ms` across all
-- transactions (and only once per transaction), never waiting for a lock. Not SECURITY DEFINER:
-- only insert_message calls it, already as the owner; nobody else is granted it.
CREATE OR REPLACE FUNCTION outbox.claim_wakeup(interval_ms bigint DEFAULT 10)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
BEGIN
  -- pg_sequence_last_value() rather than SELECT ... FROM the sequence: PL/pgSQL evaluates a
  -- plain function call without the executor, and this line is all most enqueues run.
  IF now_ms - pg_sequence_last_value('outbox.last_wakeup_ms') < interval_ms THEN
    RETURN false;  -- the common case under load: one read of the sequence, nothing locked
  END IF;
  -- The key pair is ours ('outb' in ASCII, then 1): an application's own advisory locks on
  -- other keys never meet it.
  IF NOT pg_try_advisory_xact_lock(1869968482, 1) THEN
    RETURN false;  -- another transaction is notifying right now
  END IF;
  -- Read again under the lock: a notifier that just committed has moved the clock on.
  IF now_ms - pg_sequence_last_value('outbox.last_wakeup_ms') < interval_ms THEN
    RETURN false;
  END IF;
  PERFORM setval('outbox.last_wakeup_ms', now_ms);
  RETURN true;
END
$$;

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

  -- At most one notifying transaction per interval cluster-wide (see the top of this file).
  IF outbox.claim_wakeup() THEN
    PERFORM pg_notify('outbox', '');
  END IF;
  RETURN new_id;
END
$$;

-- Revision 0004's rule: nobody calls an outbox function by default; producers get the two
-- enqueue functions (claim_wakeup runs inside them, as the owner, and needs no grant).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox FROM PUBLIC;
REVOKE ALL ON SEQUENCE outbox.last_wakeup_ms FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'outbox_producer') THEN
    GRANT EXECUTE ON FUNCTION outbox.enqueue(jsonb, text) TO outbox_producer;
    GRANT EXECUTE ON FUNCTION outbox.insert_message(jsonb, text) TO outbox_producer;
  END IF;
END
$$;
