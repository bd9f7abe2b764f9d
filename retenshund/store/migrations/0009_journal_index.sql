-- The journal is read by user (journal_pid), never by automation alone: this
-- index was written with every journal row and read by nothing.
DROP INDEX IF EXISTS journal_automation;
