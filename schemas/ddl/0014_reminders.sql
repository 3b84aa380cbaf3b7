-- pixelpipe schema, version 14: reminders (issue 20). A registration with `remind_if_unopened_after` (tracked
-- individually) writes a `pending` row due at its sent_at plus the duration; the notice stage's scheduler
-- (`notices/reminders.py`, one owner) decides it once due: `decided` (the outcome recorded before its
-- notice is emitted: not_opened or unknown), then `sent` once the notice was handed to every sink, or
-- `opened` (a person's open or click came: nothing to send). `version` is the state's rank
-- (`schemas.reminders.ReminderState.rank`), so a later state always wins and a registration repeated after
-- the decision never undoes it. The recipient only as the signing key's keyed tag (hex), never the address:
-- a suppressed recipient's reminder is dropped at its time. Erasure deletes a recipient's rows by message id
-- (`api.privacy.ERASED_TABLES`); they age out with the sends.

CREATE TABLE IF NOT EXISTS {db}.reminders
(
    account       LowCardinality(String),
    campaign_id   String,
    message_id    String,
    recipient_tag String,
    registered_at DateTime64(3, 'UTC'),
    sent_at       DateTime64(3, 'UTC'),
    due_at        DateTime64(3, 'UTC'),
    state         LowCardinality(String),
    version       UInt8,
    outcome       LowCardinality(String),
    machine_opens UInt32,
    decided_at    DateTime64(3, 'UTC'),
    INDEX idx_due due_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (account, message_id)
TTL toDateTime(due_at) + INTERVAL 13 MONTH
SETTINGS old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;
