-- The compatibility marker: revision 0010.
--
-- outbox.compatible_code lists the code revisions (each release's SCHEMA_HEAD) that may run
-- against the schema as it is now. Code whose head equals the schema's revision runs; code whose
-- head is older runs only if its head is listed here; otherwise it refuses to start ("deploy the
-- version that ran migrate"). So a pod of the release before that restarts during a rolling
-- upgrade starts again, as long as every revision since its head was expand-only.
--
-- The rule for every later revision (migrations/README.md, script.py.mako):
--   * each revision inserts its own id (the code that ships with it may run on it);
--   * an expand revision deletes nothing: every code listed before still works;
--   * a contract revision deletes the row of every code revision it breaks, typically all but
--     its own, and its downgrade puts them back.
-- A new table: no lock on any existing one.

CREATE TABLE outbox.compatible_code (
  revision text PRIMARY KEY,
  CONSTRAINT compatible_code_bounded CHECK (length(revision) BETWEEN 1 AND 64)
);
COMMENT ON TABLE outbox.compatible_code IS
  'The code revisions (a release''s schema head) that may run against this schema';

-- 0009: this table's first release ships with head 0010, but 0010 is expand-only, so the code of
-- head 0009 works on it too (it does not read this table; the row states the fact for tools).
INSERT INTO outbox.compatible_code (revision) VALUES ('0009'), ('0010')
ON CONFLICT (revision) DO NOTHING;

-- Everyone who checks the schema reads it: workers and operators at start, producers through the
-- Django system check (which also reads the revision: producers get that too, it is no secret).
-- Nobody but the migration writes it. (The same lines are in 0004_roles.sql, for roles created
-- after this revision.)
DO $$
DECLARE
  name text;
BEGIN
  FOREACH name IN ARRAY ARRAY['outbox_producer', 'outbox_worker', 'outbox_operator'] LOOP
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = name) THEN
      EXECUTE format('GRANT SELECT ON outbox.compatible_code, outbox.alembic_version TO %I', name);
    END IF;
  END LOOP;
END
$$;
