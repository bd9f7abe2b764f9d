-- When each day's activity was last received: profiles.last_seen_at is no
-- longer rewritten by every event (a random page write per event); a
-- profile's last_seen_at is the later of its own column and the latest of
-- these (see LAST_SEEN in store/sqlite.py).
ALTER TABLE activity_days ADD COLUMN last_at INTEGER NOT NULL DEFAULT 0;
