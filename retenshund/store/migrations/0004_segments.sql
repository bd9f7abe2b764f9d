-- Segment definitions. fill_cursor is set while membership is back-filled over
-- the known users (the last profile id done, 0 at the start) and NULL once every
-- one of them was evaluated, so a back-fill cut short by a restart resumes.
CREATE TABLE segments (
  segment_id  TEXT PRIMARY KEY,
  name        TEXT    NOT NULL,
  condition   TEXT    NOT NULL,   -- JSON, as saved
  version     INTEGER NOT NULL,
  fill_cursor INTEGER,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Current members. Keyed by user id so member lists page in user id order
-- straight off the key; a profile's user id never changes once set.
CREATE TABLE segment_members (
  segment_id TEXT    NOT NULL,
  user_id    TEXT    NOT NULL,
  pid        INTEGER NOT NULL,
  entered_at INTEGER NOT NULL,
  PRIMARY KEY (segment_id, user_id)
) WITHOUT ROWID;
CREATE INDEX segment_members_pid ON segment_members(pid, segment_id);

-- When a (user, segment) pair can next change with no new events: the instant
-- an occurrence leaves a `within` / `not_within` window.
CREATE TABLE segment_timers (
  pid        INTEGER NOT NULL,
  segment_id TEXT    NOT NULL,
  due_at     INTEGER NOT NULL,
  PRIMARY KEY (pid, segment_id)
) WITHOUT ROWID;
CREATE INDEX segment_timers_due ON segment_timers(due_at);

-- Per segment and UTC day: members at the end of the day (a snapshot taken by
-- the daily job; NULL until then) and the segment_entered / segment_exited
-- events written that day.
CREATE TABLE segment_counts (
  segment_id TEXT    NOT NULL,
  day        INTEGER NOT NULL,
  members    INTEGER,
  entered    INTEGER NOT NULL DEFAULT 0,
  exited     INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (segment_id, day)
) WITHOUT ROWID;

-- Occurrence times of the event names some segment condition counts, and only
-- those, pruned past the longest window that uses each name. Ingestion does
-- not write here (the segment engine does), so segments cost ingestion nothing.
CREATE TABLE segment_event_times (
  pid      INTEGER NOT NULL,
  name     TEXT    NOT NULL,
  ts       INTEGER NOT NULL,
  event_id INTEGER NOT NULL,
  PRIMARY KEY (pid, name, ts, event_id)
) WITHOUT ROWID;

-- Which names segment_event_times holds complete history for, and how far
-- back (NULL: all time). A name appears here only once its back-fill finished.
CREATE TABLE segment_tracked (
  name        TEXT PRIMARY KEY,
  lookback_ms INTEGER
) WITHOUT ROWID;

-- The last engagement computed per known user (for "has just dropped") and the
-- last UTC day they were active (who the daily job has to look at).
CREATE TABLE engagement_state (
  pid             INTEGER PRIMARY KEY,
  last_active_day INTEGER NOT NULL,
  day             INTEGER NOT NULL,
  state           TEXT    NOT NULL,
  baseline        REAL    NOT NULL,
  recent          REAL    NOT NULL,
  ratio           REAL,
  active_days     INTEGER NOT NULL
);
CREATE INDEX engagement_state_active ON engagement_state(last_active_day);

-- Small durable state of the segment engine (the last day the daily job ran).
CREATE TABLE segments_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
