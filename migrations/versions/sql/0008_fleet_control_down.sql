-- Undo revision 0008: the registry, the pause and the audit log go, with their functions.
-- Dropping the audit log is the one way its rows leave before their retention: a downgrade is
-- an administrator's decision, taken as the tables' owner.
DROP FUNCTION outbox.purge_expired_audit(interval, integer, bigint);
DROP TABLE outbox.audit_log;
DROP FUNCTION outbox.audit_log_guard();
DROP FUNCTION outbox.audit_log_no_truncate();
DROP TABLE outbox.pause;
DROP TABLE outbox.workers;
