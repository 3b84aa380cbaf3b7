-- pixelpipe schema, version 8: what happened to each message, one small row per message, so a campaign's
-- delivery numbers are one scan of its messages (`api.sql.deliveries.campaigns_delivery`) instead of a union
-- of the rollups' message sets.
--
-- A message's status needs everything that happened to it (`api.sql.deliveries.RULES`: a delivered event, a
-- bounce, an open ...), and the events come out of order and replayed. So each row keeps the bits of
-- `api.sql.deliveries.Flag` (SENT, READ, DELIVERED, HARD, SOFT, DROPPED, DEFERRED, COMPLAINT, UNSUBSCRIBE) as
-- a SimpleAggregateFunction(groupBitOr): rows of one message merge into the OR of their flags, a replay sets
-- a bit already set. `message` is cityHash64(message_id), as in the rollups (0002: the same 64-bit
-- collisions are the only inexactness). Fed at insert time by the views below from `sends` (SENT), `events`
-- (READ: every counted open and click, people or machines) and matched `deliveries` (their event's flag, as
-- `api.sql.deliveries.event_flag`; tests/unit/test_delivery_rules.py holds the two equal).
--
-- Retention and erasure as the rollups (api/sql/rollup_upkeep.py): a TTL on `last_at`, and an erased
-- message's rows deleted by its hash; the replaced parts leave the disk as fast as the other erased tables'
-- (0005).

CREATE TABLE IF NOT EXISTS {db}.message_flags
(
    account     LowCardinality(String),
    campaign_id String,
    message     UInt64,
    flags       SimpleAggregateFunction(groupBitOr, UInt16),
    last_at     SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (account, campaign_id, message)
TTL last_at + INTERVAL 13 MONTH
SETTINGS old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.message_flags_from_sends TO {db}.message_flags AS
SELECT account, campaign_id, cityHash64(message_id) AS message, toUInt16(256) AS flags,
       toDateTime(max(sent_at), 'UTC') AS last_at
FROM {db}.sends
GROUP BY account, campaign_id, message;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.message_flags_from_events TO {db}.message_flags AS
SELECT account, campaign_id, cityHash64(message_id) AS message, toUInt16(1) AS flags,
       toDateTime(max(received_at), 'UTC') AS last_at
FROM {db}.events
GROUP BY account, campaign_id, message;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.message_flags_from_deliveries TO {db}.message_flags AS
SELECT account, campaign_id, cityHash64(message_id) AS message,
       groupBitOr(toUInt16(multiIf(event = 'bounce', if(bounce_type = 'hard', 4, 8), event = 'delivered', 2,
           event = 'dropped', 16, event = 'deferred', 32, event = 'complaint', 64, event = 'unsubscribe', 128,
           0))) AS flags,
       toDateTime(max(occurred_at), 'UTC') AS last_at
FROM {db}.deliveries
WHERE message_id != ''
GROUP BY account, campaign_id, message;

-- Backfill what was stored before this migration (the views only see new inserts): the same SELECTs. A row
-- written twice (an insert between CREATE VIEW and INSERT ... SELECT) sets its bits twice: harmless.
INSERT INTO {db}.message_flags
SELECT account, campaign_id, cityHash64(message_id) AS message, toUInt16(256) AS flags,
       toDateTime(max(sent_at), 'UTC') AS last_at
FROM {db}.sends
GROUP BY account, campaign_id, message;

INSERT INTO {db}.message_flags
SELECT account, campaign_id, cityHash64(message_id) AS message, toUInt16(1) AS flags,
       toDateTime(max(received_at), 'UTC') AS last_at
FROM {db}.events
GROUP BY account, campaign_id, message;

INSERT INTO {db}.message_flags
SELECT account, campaign_id, cityHash64(message_id) AS message,
       groupBitOr(toUInt16(multiIf(event = 'bounce', if(bounce_type = 'hard', 4, 8), event = 'delivered', 2,
           event = 'dropped', 16, event = 'deferred', 32, event = 'complaint', 64, event = 'unsubscribe', 128,
           0))) AS flags,
       toDateTime(max(occurred_at), 'UTC') AS last_at
FROM {db}.deliveries
WHERE message_id != ''
GROUP BY account, campaign_id, message;
