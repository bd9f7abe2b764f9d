-- Inbound webhook deliveries we have seen, by (source, provider event id).
-- This is the webhook dedupe: kept for 7 days by the prune job whatever
-- store.dedupe_window says, because providers retry for days (Stripe: 3).
-- outcome: stored | unmatched | ignored.
CREATE TABLE webhook_events (
  source      TEXT    NOT NULL,
  event_id    TEXT    NOT NULL,
  type        TEXT,
  outcome     TEXT    NOT NULL,
  detail      TEXT,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (source, event_id)
) WITHOUT ROWID;
CREATE INDEX webhook_events_received ON webhook_events(received_at);

-- Webhooks whose user could not be found (no profile had the trait value yet).
-- Kept, listed by GET /v1/webhooks/unmatched, and replayed into the user's
-- events when a profile later gets the trait (replayed_at is then set).
-- lookup_value is the JSON of the value looked up, so "42" and 42 stay apart.
CREATE TABLE webhook_unmatched (
  id               INTEGER PRIMARY KEY,
  source           TEXT    NOT NULL,
  event_id         TEXT    NOT NULL,
  type             TEXT    NOT NULL,
  event            TEXT    NOT NULL,
  user_trait       TEXT,
  lookup_value     TEXT,
  properties       TEXT    NOT NULL,
  reason           TEXT    NOT NULL,
  received_at      INTEGER NOT NULL,
  replayed_at      INTEGER,
  replayed_user_id TEXT
);
CREATE INDEX webhook_unmatched_source ON webhook_unmatched(source, id);
CREATE INDEX webhook_unmatched_received ON webhook_unmatched(received_at);
CREATE INDEX webhook_unmatched_pending ON webhook_unmatched(user_trait, lookup_value) WHERE replayed_at IS NULL;
-- A GDPR delete of a user removes the webhooks replayed to them.
CREATE INDEX webhook_unmatched_user ON webhook_unmatched(replayed_user_id) WHERE replayed_user_id IS NOT NULL;

-- Analytics: per-automation and per-template reports over a time range.
CREATE INDEX messages_automation ON messages(automation_id, created_at);
CREATE INDEX messages_template ON messages(template_id, created_at);
-- Time to trigger: only delivered messages, and covering (no row lookups).
CREATE INDEX messages_delivered ON messages(delivered_at, channel, trigger_at) WHERE delivered_at IS NOT NULL;
-- Per-message unsubscribes recorded in the history ("unsubscribed" entries):
-- lets analytics ask "are any recorded at all?" without a scan.
CREATE INDEX message_history_unsubscribed ON message_history(message_id) WHERE status = 'unsubscribed';
