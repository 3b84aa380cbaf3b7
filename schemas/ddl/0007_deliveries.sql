-- pixelpipe schema, version 7: the email's life before the open. The mail services' events (delivered,
-- deferred, bounce, dropped, complaint, unsubscribe: `schemas.delivery_events`), the sender's mail-service
-- accounts whose events the edge takes in, and the provider's message id of a registered send.
--
-- `deliveries` is loaded exactly once like `events` (an insert_deduplication_token per batch, then the
-- offset commit) and keyed by `delivery_id` (`schemas.delivery_events.delivery_id`: account, provider and the
-- provider's id of the event), so a provider's retry of an event is the same row twice, counted once: the
-- rollups below keep sets of message hashes, a replay is the same element twice. Events that match no send
-- are kept (message_id '', `matched_by` '' and the reason in `unmatched_reason`) and never reach the rollups.
-- The recipient and the diagnostic text are personal data: erasure deletes the rows (by recipient and by
-- the erased messages), retention drops them with the hits (`Store.apply_retention`), and the replaced
-- parts leave the disk as fast as those of the other erased tables (0005).

CREATE TABLE IF NOT EXISTS {db}.deliveries
(
    delivery_id         String,
    account             LowCardinality(String),
    campaign_id         String,
    message_id          String,
    recipient           String,
    provider            LowCardinality(String),
    provider_event_id   String,
    provider_message_id String,
    event               LowCardinality(String),
    bounce_type         LowCardinality(String),
    smtp_status         LowCardinality(String),
    smtp_code           UInt16,
    diagnostic          String,
    provider_type       LowCardinality(String),
    matched_by          LowCardinality(String),
    unmatched_reason    LowCardinality(String),
    occurred_at         DateTime64(3, 'UTC'),
    received_at         DateTime64(3, 'UTC'),
    INDEX idx_message message_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_recipient recipient TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (account, campaign_id, message_id, event, delivery_id)
TTL toDateTime(occurred_at) + INTERVAL 13 MONTH
SETTINGS non_replicated_deduplication_window = 10000, old_parts_lifetime = 60, cleanup_delay_period = 10,
    max_cleanup_delay_period = 30;

-- Rollups (0002's table and rules): per campaign, the messages with each delivery event (kind 'delivery',
-- who = the event, label = the bounce type), in 4096 buckets of their hash like the sends; and per hour the
-- events and their messages, for time series. Matched events only.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollups_from_deliveries TO {db}.rollups AS
SELECT a AS account, r.1 AS campaign_id, r.2 AS rollup, r.3 AS kind, r.4 AS who, r.5 AS label, r.6 AS at,
       r.7 AS bucket, groupUniqArrayIf(hit, r.8) AS hits, groupUniqArray(message) AS messages,
       toInt16(-1) AS link_index, max(occurred) AS last_at
FROM
(
    SELECT account AS a, campaign_id AS c, toString(event) AS e, toString(bounce_type) AS b,
           cityHash64(delivery_id) AS hit, cityHash64(message_id) AS message,
           toDateTime(occurred_at, 'UTC') AS occurred
    FROM {db}.deliveries
    WHERE message_id != ''
)
ARRAY JOIN [
    (c, 'messages', 'delivery', e, b, toDateTime(0, 'UTC'), toUInt16(message % 4096), false),
    (c, 'hour', 'delivery', e, b, toStartOfHour(occurred), toUInt16(0), true)
] AS r
GROUP BY a, r.1, r.2, r.3, r.4, r.5, r.6, r.7;

-- The mail-service accounts of a sender: one per account and provider. `ingest_id` is the unguessable part of
-- its ingest URL; `credentials` the provider's keys, sealed like webhook secrets (never stored in clear,
-- never answered in full: `hint`); `options` what is not secret (JSON, e.g. the SNS topics accepted).
CREATE TABLE IF NOT EXISTS {db}.mail_services
(
    account     LowCardinality(String),
    provider    LowCardinality(String),
    ingest_id   String,
    credentials String,
    hint        String,
    options     String,
    created_at  DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC'),
    deleted     UInt8
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (account, provider);

-- The mail service's id of a registered send (`POST /v1/messages`' `provider_message_id`): the second way a
-- delivery event finds its message.
ALTER TABLE {db}.sends ADD COLUMN IF NOT EXISTS provider_message_id String DEFAULT '';
ALTER TABLE {db}.sends ADD INDEX IF NOT EXISTS idx_provider_message provider_message_id TYPE bloom_filter GRANULARITY 4;
