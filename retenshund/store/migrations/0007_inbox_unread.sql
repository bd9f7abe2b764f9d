-- The unread count goes out with every in-app message: count only the unread
-- rows of the user (a partial, covering index), not every row they ever got.
CREATE INDEX inbox_unread ON inbox(pid) WHERE read_at IS NULL AND archived_at IS NULL;
