-- Templates: the definition as sent (JSON), versioned on every change.
CREATE TABLE templates (
  template_id TEXT PRIMARY KEY,
  spec        TEXT    NOT NULL,
  version     INTEGER NOT NULL,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per message per channel.
CREATE TABLE messages (
  message_id    TEXT PRIMARY KEY,
  pid           INTEGER NOT NULL,
  user_id       TEXT    NOT NULL,
  channel       TEXT    NOT NULL,
  template_id   TEXT,
  category      TEXT    NOT NULL,
  status        TEXT    NOT NULL,
  reason        TEXT,
  variables     TEXT    NOT NULL DEFAULT '{}',
  event         TEXT,
  automation_id TEXT,
  run_id        TEXT,
  rendered      TEXT,
  trigger_at    INTEGER NOT NULL,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  delivered_at  INTEGER
) WITHOUT ROWID;
CREATE INDEX messages_pid ON messages(pid, created_at);
CREATE INDEX messages_created ON messages(created_at);

CREATE TABLE message_history (
  message_id TEXT    NOT NULL,
  seq        INTEGER NOT NULL,
  status     TEXT    NOT NULL,
  at         INTEGER NOT NULL,
  detail     TEXT,
  PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;

-- Durable jobs. A job is claimed by setting a lease; a lease that runs out
-- (its process died) makes the job claimable again.
CREATE TABLE outbox (
  job_id      INTEGER PRIMARY KEY,
  message_id  TEXT    NOT NULL UNIQUE,
  due_at      INTEGER NOT NULL,
  attempt     INTEGER NOT NULL DEFAULT 0,
  first_at    INTEGER NOT NULL,
  lease_until INTEGER
);
CREATE INDEX outbox_due ON outbox(due_at);

-- One row per delivery attempt, written before the attempt goes out: a
-- retried claim of the same (message, attempt) cannot send twice.
CREATE TABLE deliveries (
  message_id TEXT    NOT NULL,
  attempt    INTEGER NOT NULL,
  at         INTEGER NOT NULL,
  PRIMARY KEY (message_id, attempt)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
  key        TEXT PRIMARY KEY,
  body_hash  TEXT    NOT NULL,
  response   TEXT    NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency_keys(created_at);

CREATE TABLE inbox (
  id          TEXT PRIMARY KEY,
  pid         INTEGER NOT NULL,
  title       TEXT,
  body        TEXT,
  url         TEXT,
  data        TEXT    NOT NULL DEFAULT '{}',
  created_at  INTEGER NOT NULL,
  read_at     INTEGER,
  archived_at INTEGER
) WITHOUT ROWID;
CREATE INDEX inbox_pid ON inbox(pid, created_at);

CREATE TABLE push_subscriptions (
  endpoint   TEXT PRIMARY KEY,
  pid        INTEGER NOT NULL,
  p256dh     TEXT    NOT NULL,
  auth       TEXT    NOT NULL,
  user_agent TEXT,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX push_subscriptions_pid ON push_subscriptions(pid);

-- Email addresses that bounced hard: never mailed again.
CREATE TABLE email_suppressions (
  address TEXT PRIMARY KEY,
  reason  TEXT    NOT NULL,
  at      INTEGER NOT NULL
) WITHOUT ROWID;
