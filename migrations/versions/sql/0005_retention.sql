-- Retention by the fleet, without DELETE on the table for the worker role: one batch of expired
-- rows of one final state, oldest first along the state's partial index, under the fleet's
-- retention lock. The lock is transaction-scoped and never waited for (a worker that does not get
-- it skips its pass: another one is at it), so it works through a transaction-pooling PgBouncer and
-- is never left behind by a killed worker. Rows another transaction holds are skipped, and the
-- DELETE repeats the condition, so a row requeued since the SELECT is kept.
CREATE OR REPLACE FUNCTION outbox.purge_expired(
    final_state text, older_than interval, max_rows integer, lock_id bigint
)
RETURNS TABLE (held boolean, deleted integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, outbox, pg_temp
AS $$
BEGIN
  IF final_state NOT IN ('acknowledged', 'dead') THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'retention removes only acknowledged or dead rows';
  END IF;
  held := pg_try_advisory_xact_lock(lock_id);
  deleted := 0;
  IF NOT held THEN
    RETURN NEXT;
    RETURN;
  END IF;
  IF final_state = 'acknowledged' THEN
    WITH gone AS (
      DELETE FROM outbox.messages WHERE id IN (
        SELECT id FROM outbox.messages
        WHERE state = 'acknowledged' AND acknowledged_at < now() - older_than
        ORDER BY acknowledged_at LIMIT max_rows FOR UPDATE SKIP LOCKED
      ) AND state = 'acknowledged' AND acknowledged_at < now() - older_than
      RETURNING 1
    )
    SELECT count(*) INTO deleted FROM gone;
  ELSE
    WITH gone AS (
      DELETE FROM outbox.messages WHERE id IN (
        SELECT id FROM outbox.messages
        WHERE state = 'dead' AND dead_at < now() - older_than
        ORDER BY dead_at LIMIT max_rows FOR UPDATE SKIP LOCKED
      ) AND state = 'dead' AND dead_at < now() - older_than
      RETURNING 1
    )
    SELECT count(*) INTO deleted FROM gone;
  END IF;
  RETURN NEXT;
END
$$;

REVOKE ALL ON FUNCTION outbox.purge_expired(text, interval, integer, bigint) FROM PUBLIC;

DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'outbox_worker') THEN
    GRANT EXECUTE ON FUNCTION outbox.purge_expired(text, interval, integer, bigint)
      TO outbox_worker;
  END IF;
END
$$;
