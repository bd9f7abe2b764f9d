-- Daily activity per profile (UTC days), kept by ingestion in the same
-- transaction as the events: the input of the personal engagement baseline.
CREATE TABLE activity_days (
  pid   INTEGER NOT NULL,
  day   INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (pid, day)
) WITHOUT ROWID;

-- Automation definitions; every change is a new version, and runs keep the
-- version they started with.
CREATE TABLE automations (
  automation_id TEXT PRIMARY KEY,
  version       INTEGER NOT NULL,
  definition    TEXT    NOT NULL,
  enabled       INTEGER NOT NULL,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE automation_versions (
  automation_id TEXT    NOT NULL,
  version       INTEGER NOT NULL,
  definition    TEXT    NOT NULL,
  created_at    INTEGER NOT NULL,
  PRIMARY KEY (automation_id, version)
) WITHOUT ROWID;

-- One run per user per entry into an automation.
CREATE TABLE runs (
  run_id        TEXT PRIMARY KEY,
  automation_id TEXT    NOT NULL,
  version       INTEGER NOT NULL,
  pid           INTEGER NOT NULL,
  user_id       TEXT    NOT NULL,
  status        TEXT    NOT NULL,   -- active | waiting | completed | exited | held_out
  holdout       INTEGER NOT NULL DEFAULT 0,
  trigger_event TEXT,               -- JSON: the triggering event's properties and name
  trigger_at    INTEGER NOT NULL,
  position      TEXT    NOT NULL,   -- JSON path of the next step, e.g. [2] or [3,"if_not",0]
  wait_until    INTEGER,            -- a wait or wait_for timeout is due
  waiting_for   TEXT,               -- event name a wait_for waits for
  goal_at       INTEGER,            -- when the goal event happened (conversion)
  started_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  ended_at      INTEGER
) WITHOUT ROWID;
CREATE INDEX runs_due ON runs(wait_until) WHERE wait_until IS NOT NULL;
CREATE INDEX runs_pid ON runs(pid, automation_id);
CREATE INDEX runs_automation ON runs(automation_id, started_at);
CREATE INDEX runs_waiting_for ON runs(pid, waiting_for) WHERE waiting_for IS NOT NULL;

-- A step executes once: the key (run, step path, occurrence) is claimed in the
-- same transaction as the step's effects.
CREATE TABLE run_steps (
  run_id  TEXT NOT NULL,
  step    TEXT NOT NULL,
  at      INTEGER NOT NULL,
  outcome TEXT,
  PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

-- The decision trace: why something happened or did not, per user and automation.
CREATE TABLE journal (
  id            INTEGER PRIMARY KEY,
  pid           INTEGER NOT NULL,
  user_id       TEXT    NOT NULL,
  automation_id TEXT,
  run_id        TEXT,
  kind          TEXT    NOT NULL,
  detail        TEXT,
  at            INTEGER NOT NULL
);
CREATE INDEX journal_pid ON journal(pid, id);
CREATE INDEX journal_automation ON journal(automation_id, id);

-- Small durable state of the engine (e.g. the last event id it processed).
CREATE TABLE engine_state (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- A message sent only if another (in-app) one is still unread after a while;
-- cancelled when that one is read.
ALTER TABLE messages ADD COLUMN fallback_of TEXT;
CREATE INDEX messages_fallback ON messages(fallback_of) WHERE fallback_of IS NOT NULL;
CREATE INDEX messages_run ON messages(run_id) WHERE run_id IS NOT NULL;
CREATE INDEX messages_pid_automation ON messages(pid, created_at) WHERE automation_id IS NOT NULL;
