-- Profiles: one row per person. user_id is NULL while only anonymous ids are known.
CREATE TABLE profiles (
  pid          INTEGER PRIMARY KEY,
  user_id      TEXT UNIQUE,
  traits       TEXT    NOT NULL DEFAULT '{}',
  preferences  TEXT    NOT NULL DEFAULT '{}',
  created_at   INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL
);

-- Every id a person is known by ('u:<userId>' or 'a:<anonymousId>') -> profile.
-- alias and identify-with-both-ids repoint rows here when profiles merge.
CREATE TABLE identities (
  id  TEXT PRIMARY KEY,
  pid INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX identities_pid ON identities(pid);

-- The event log. id is the bus cursor: AUTOINCREMENT so ids are never reused
-- after a deletion (a subscriber's cursor must never skip a new event).
CREATE TABLE events (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  pid          INTEGER NOT NULL,
  message_id   TEXT    NOT NULL,
  type         TEXT    NOT NULL,
  event        TEXT,
  user_id      TEXT,
  anonymous_id TEXT,
  data         TEXT    NOT NULL,
  timestamp    INTEGER NOT NULL,
  received_at  INTEGER NOT NULL
);
CREATE INDEX events_pid ON events(pid, id);

-- messageId dedupe, exact. Kept apart from events so that deleting a user's
-- events (GDPR) does not let a replayed request store them again, and so
-- old ids can be pruned after the dedupe window.
CREATE TABLE message_ids (
  message_id  TEXT    PRIMARY KEY,
  received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX message_ids_received ON message_ids(received_at);

CREATE TABLE groups (
  group_id   TEXT PRIMARY KEY,
  traits     TEXT    NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE group_members (
  group_id  TEXT    NOT NULL,
  pid       INTEGER NOT NULL,
  joined_at INTEGER NOT NULL,
  PRIMARY KEY (group_id, pid)
) WITHOUT ROWID;
CREATE INDEX group_members_pid ON group_members(pid);

-- API keys created at first start or with `retenshund keys create`.
-- Only a SHA-256 of the key is kept.
CREATE TABLE api_keys (
  key_id     TEXT PRIMARY KEY,
  kind       TEXT    NOT NULL,
  key_hash   TEXT    NOT NULL UNIQUE,
  hint       TEXT    NOT NULL,
  label      TEXT    NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
