-- The outbox's three group roles (NOLOGIN) and what each may do. Grant them to login roles:
--   GRANT outbox_producer TO app_service;   GRANT outbox_worker TO outbox_daemon;
--   GRANT outbox_operator TO alice;
-- `outbox-worker migrate` runs this file when its login may create roles (or they exist);
-- otherwise it prints the file for a superuser (or a CREATEROLE login) to run. Safe to run
-- again, and in every database of a cluster: roles are cluster-wide and are created only if
-- missing (a concurrent creation by another database's migration is tolerated).
DO $$
DECLARE
  name text;
BEGIN
  FOREACH name IN ARRAY ARRAY['outbox_producer', 'outbox_worker', 'outbox_operator'] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = name) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', name);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- another database's migration created it a moment ago
      END;
    END IF;
  END LOOP;
END
$$;

-- Producers: enqueue (SQL and Python API) through the SECURITY DEFINER functions only. No
-- privilege on the table: they cannot skip validation, write states or read others' rows.
GRANT USAGE ON SCHEMA outbox TO outbox_producer;
-- Whichever signatures this schema has: (jsonb, text) up to revision 0008, (jsonb, text, jsonb)
-- with the trace context from revision 0009 (this file is also what `migrate` prints at head).
DO $$
DECLARE
  fn regprocedure;
BEGIN
  FOR fn IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
    WHERE p.pronamespace = 'outbox'::regnamespace AND p.proname IN ('enqueue', 'insert_message')
  LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO outbox_producer', fn);
  END LOOP;
END
$$;

-- Workers: claim, settle and release (read rows, update the delivery columns, never the
-- payload or dedup key), and read the schema version at start. No DDL, no DELETE, no INSERT.
GRANT USAGE ON SCHEMA outbox TO outbox_worker;
GRANT SELECT ON outbox.messages, outbox.alembic_version TO outbox_worker;
GRANT UPDATE (state, attempts, available_at, lease_token, claimed_at, acknowledged_at, dead_at,
              last_status, last_error, last_response, history)
  ON outbox.messages TO outbox_worker;
GRANT EXECUTE ON FUNCTION outbox.history_push(jsonb, jsonb, integer) TO outbox_worker;
-- The fleet's shared send schedule (OUTBOX_RATE_LIMIT): reserved by upsert.
GRANT SELECT, INSERT, UPDATE ON outbox.send_schedule TO outbox_worker;
-- Retention (revision 0005): expired acknowledged and dead rows only, through the function.
DO $$
BEGIN
  IF to_regprocedure('outbox.purge_expired(text, interval, integer, bigint)') IS NOT NULL THEN
    GRANT EXECUTE ON FUNCTION outbox.purge_expired(text, interval, integer, bigint)
      TO outbox_worker;
  END IF;
END
$$;

-- Operators: read (dead list/show, stats, check), requeue and purge. Not the payload either.
GRANT USAGE ON SCHEMA outbox TO outbox_operator;
GRANT SELECT, DELETE ON outbox.messages TO outbox_operator;
GRANT SELECT ON outbox.alembic_version TO outbox_operator;
GRANT UPDATE (state, attempts, available_at, dead_at, lease_token, claimed_at, requeue_count,
              requeued_at)
  ON outbox.messages TO outbox_operator;

-- Fleet control (revision 0008), when the schema has it: workers keep their row in the registry
-- and read the pause; operators read the registry, set the pause, and add and read audit rows
-- (never change or delete them).
DO $$
BEGIN
  IF to_regclass('outbox.workers') IS NOT NULL THEN
    GRANT SELECT, INSERT, UPDATE, DELETE ON outbox.workers TO outbox_worker;
    GRANT SELECT ON outbox.pause TO outbox_worker;
    GRANT EXECUTE ON FUNCTION outbox.purge_expired_audit(interval, integer, bigint)
      TO outbox_worker;
    GRANT SELECT ON outbox.workers TO outbox_operator;
    GRANT SELECT, INSERT, UPDATE ON outbox.pause TO outbox_operator;
    GRANT SELECT, INSERT ON outbox.audit_log TO outbox_operator;
  END IF;
END
$$;

-- The compatibility marker (revision 0010), when the schema has it: every role reads which code
-- revisions may run on this schema, and the revision itself (producers for the Django check).
DO $$
BEGIN
  IF to_regclass('outbox.compatible_code') IS NOT NULL THEN
    GRANT SELECT ON outbox.compatible_code, outbox.alembic_version
      TO outbox_producer, outbox_worker, outbox_operator;
  END IF;
END
$$;
