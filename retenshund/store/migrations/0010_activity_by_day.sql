-- activity_days clustered by day, then profile: every event updates its
-- sender's row for today, and keyed by profile first those rows were spread
-- over the whole table (a page of its own per event once the table is large).
-- Today's rows now sit together, however much history the store holds; the
-- reads by profile (baseline, last_seen_at, merges, deletes) use the index,
-- which changes only when a profile is first active on a day.
CREATE TABLE activity_days_by_day (
  day     INTEGER NOT NULL,
  pid     INTEGER NOT NULL,
  count   INTEGER NOT NULL,
  last_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (day, pid)
) WITHOUT ROWID;
INSERT INTO activity_days_by_day (day, pid, count, last_at)
  SELECT day, pid, count, last_at FROM activity_days ORDER BY day, pid;
DROP TABLE activity_days;
ALTER TABLE activity_days_by_day RENAME TO activity_days;
CREATE INDEX activity_days_pid ON activity_days(pid, day);
