-- The fatigue count reads each candidate row for its category and status
-- anyway, so messages_pid (pid, created_at) serves it as well; the partial
-- copy cost every automation message one more random index write.
DROP INDEX IF EXISTS messages_pid_automation;
