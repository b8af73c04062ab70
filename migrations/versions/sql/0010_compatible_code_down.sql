-- Undo revision 0010: the compatibility marker goes (code of head 0009 and older never read it),
-- and producers lose the revision they read for the Django check (revision 0004 gave them none).
DROP TABLE outbox.compatible_code;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'outbox_producer') THEN
    REVOKE SELECT ON outbox.alembic_version FROM outbox_producer;
  END IF;
END
$$;
