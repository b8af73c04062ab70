-- Fleet control: revision 0008. Three small new tables; nothing touches outbox.messages, so no
-- lock is taken on the queue and enqueue and delivery go on while this runs.
--
-- outbox.workers   every running worker's row: who it is (host, pid, version, start), refreshed
--                  every few seconds with its state and what it did lately. A row not refreshed
--                  for a while is a worker that is gone; the workers delete such rows later.
-- outbox.pause     the fleet's one pause switch: operators set it, every worker reads it (at once
--                  on the NOTIFY the change sends, else at its next poll) and starts no send while
--                  it is on; workers that start later read it before their first claim.
-- outbox.audit_log what operators did (requeue, purge, pause, resume, console sign-in, a reveal of
--                  personal data): append-only, written in the same transaction as the action.
SET LOCAL lock_timeout = '5s';

CREATE TABLE outbox.workers (
    id uuid PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'starting',
    paused_by text,
    listening boolean NOT NULL DEFAULT false,
    sends_last_minute integer NOT NULL DEFAULT 0,
    in_flight integer NOT NULL DEFAULT 0,
    CONSTRAINT workers_state_check
        CHECK (state IN ('starting', 'delivering', 'paused', 'stopping', 'stopped')),
    CONSTRAINT workers_paused_by_check
        CHECK (paused_by IN ('configuration', 'outage', 'operator')),
    CONSTRAINT workers_bounded CHECK (
        length(host) <= 255 AND length(version) <= 64
        AND sends_last_minute >= 0 AND in_flight >= 0
    )
);
COMMENT ON TABLE outbox.workers IS
    'The running workers, each refreshing its own row every few seconds (seen_at)';

CREATE TABLE outbox.pause (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    reason text,
    paused_at timestamptz,
    changed_at timestamptz NOT NULL DEFAULT now(),
    db_role text NOT NULL DEFAULT session_user,
    via text,
    actor text,
    CONSTRAINT pause_bounded CHECK (length(reason) <= 500 AND length(actor) <= 200)
);
COMMENT ON TABLE outbox.pause IS
    'The fleet-wide delivery pause: while paused, no worker starts a send';

CREATE TABLE outbox.audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    operation uuid NOT NULL,
    action text NOT NULL,
    db_role text NOT NULL DEFAULT session_user,
    via text NOT NULL,
    actor text,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    row_count bigint NOT NULL DEFAULT 0,
    CONSTRAINT audit_log_action_check CHECK (action ~ '^[a-z][a-z_.]{0,39}$'),
    CONSTRAINT audit_log_via_check CHECK (via ~ '^[a-z][a-z_]{0,19}$'),
    CONSTRAINT audit_log_bounded CHECK (
        length(actor) <= 200 AND jsonb_typeof(details) = 'object' AND row_count >= 0
    )
);
COMMENT ON TABLE outbox.audit_log IS
    'What operators did, append-only: one row per transaction of an action';
CREATE INDEX audit_log_at_idx ON outbox.audit_log (at);

-- Append-only, whoever asks: the grants give operators INSERT and SELECT only, and this guard
-- holds even for the owner. An inserted row gets the database's clock and the login's name
-- (session_user: a SET ROLE does not hide who logged in), whatever the client sent. A row never
-- changes, and only retention deletes one, never younger than 90 days (the floor that
-- purge_expired_audit enforces too).
CREATE FUNCTION outbox.audit_log_guard()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.at := now();
    NEW.db_role := session_user;
    RETURN NEW;
  END IF;
  IF TG_OP = 'DELETE' AND OLD.at < now() - interval '90 days' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION USING
    ERRCODE = 'insufficient_privilege',
    MESSAGE = 'outbox.audit_log is append-only: its rows are never changed, and only retention '
              'deletes them (after at least 90 days)';
END
$$;

CREATE FUNCTION outbox.audit_log_no_truncate()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = 'insufficient_privilege',
    MESSAGE = 'outbox.audit_log is append-only: it cannot be truncated';
END
$$;

CREATE TRIGGER audit_log_guard
    BEFORE INSERT OR UPDATE OR DELETE ON outbox.audit_log
    FOR EACH ROW EXECUTE FUNCTION outbox.audit_log_guard();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON outbox.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION outbox.audit_log_no_truncate();

-- Retention of the audit log by the fleet, as purge_expired does for messages: one batch of the
-- oldest rows older than `older_than` (at least 90 days), under the fleet's retention lock,
-- never waited for. SECURITY DEFINER: the worker role holds no DELETE on the table.
CREATE FUNCTION outbox.purge_expired_audit(older_than interval, max_rows integer, lock_id bigint)
RETURNS TABLE (held boolean, deleted integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, outbox, pg_temp
AS $$
BEGIN
  IF older_than < interval '90 days' THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'audit rows are kept at least 90 days';
  END IF;
  held := pg_try_advisory_xact_lock(lock_id);
  deleted := 0;
  IF held THEN
    WITH gone AS (
      DELETE FROM outbox.audit_log WHERE id IN (
        SELECT id FROM outbox.audit_log WHERE at < now() - older_than
        ORDER BY at LIMIT max_rows
      )
      RETURNING 1
    )
    SELECT count(*) INTO deleted FROM gone;
  END IF;
  RETURN NEXT;
END
$$;

REVOKE ALL ON FUNCTION outbox.audit_log_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox.audit_log_no_truncate() FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox.purge_expired_audit(interval, integer, bigint) FROM PUBLIC;

-- The grants (the same lines are in 0004_roles.sql, for roles created after this revision).
-- Workers: their own rows in the registry (and deleting rows of workers long gone), the pause
-- read-only, audit retention through the function. Operators: read the registry, set the pause,
-- add and read audit rows: never UPDATE or DELETE on the log.
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'outbox_worker') THEN
    GRANT SELECT, INSERT, UPDATE, DELETE ON outbox.workers TO outbox_worker;
    GRANT SELECT ON outbox.pause TO outbox_worker;
    GRANT EXECUTE ON FUNCTION outbox.purge_expired_audit(interval, integer, bigint)
      TO outbox_worker;
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'outbox_operator') THEN
    GRANT SELECT ON outbox.workers TO outbox_operator;
    GRANT SELECT, INSERT, UPDATE ON outbox.pause TO outbox_operator;
    GRANT SELECT, INSERT ON outbox.audit_log TO outbox_operator;
  END IF;
END
$$;
