-- pixelpipe schema, version 1. Applied at start, idempotently (IF NOT EXISTS), by schemas.store.migrate.
-- Every table is ordered by (account, campaign_id, message_id, ...): each API question starts from an account
-- and a campaign or a message, and that prefix lets ClickHouse read only the granules of that campaign.
-- Partitions are months of event time: small enough for TTL to drop whole parts, few enough to stay cheap.
-- non_replicated_deduplication_window makes insert_deduplication_token work on plain MergeTree tables, so a
-- retried batch is stored once. Counts use uniqExact(hit_id) besides, so a replayed hit never counts twice
-- even before ReplacingMergeTree merges the copy away.

CREATE TABLE IF NOT EXISTS {db}.sends
(
    account       LowCardinality(String),
    campaign_id   String,
    message_id    String,
    recipient     String,
    sent_at       DateTime64(3, 'UTC'),
    registered_at DateTime64(3, 'UTC'),
    links         Array(String),
    INDEX idx_message message_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_recipient recipient TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(registered_at)
PARTITION BY toYYYYMM(sent_at)
ORDER BY (account, campaign_id, message_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.events
(
    hit_id        String,
    kind          Enum8('open' = 1, 'click' = 2),
    account       LowCardinality(String),
    campaign_id   String,
    message_id    String,
    sent_at       DateTime64(3, 'UTC'),
    received_at   DateTime64(3, 'UTC'),
    link_index    Int16,
    url           String,
    verdict       LowCardinality(String),
    reason        LowCardinality(String),
    via_proxy     Bool,
    country       LowCardinality(String),
    city          String,
    time_zone     LowCardinality(String),
    asn           UInt32,
    as_org        LowCardinality(String),
    ip            String,
    device        LowCardinality(String),
    os            LowCardinality(String),
    client        LowCardinality(String),
    user_agent    String,
    source        String,
    INDEX idx_message message_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (account, campaign_id, message_id, kind, hit_id)
TTL toDateTime(received_at) + INTERVAL 13 MONTH
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.filtered_hits
(
    hit_id        String,
    kind          Enum8('open' = 1, 'click' = 2),
    account       LowCardinality(String),
    campaign_id   String,
    message_id    String,
    sent_at       DateTime64(3, 'UTC'),
    received_at   DateTime64(3, 'UTC'),
    link_index    Int16,
    url           String,
    verdict       LowCardinality(String),
    reason        LowCardinality(String),
    via_proxy     Bool,
    country       LowCardinality(String),
    city          String,
    time_zone     LowCardinality(String),
    asn           UInt32,
    as_org        LowCardinality(String),
    ip            String,
    device        LowCardinality(String),
    os            LowCardinality(String),
    client        LowCardinality(String),
    user_agent    String,
    source        String,
    token_head    String,
    INDEX idx_message message_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (account, campaign_id, message_id, kind, hit_id)
TTL toDateTime(received_at) + INTERVAL 3 MONTH
SETTINGS non_replicated_deduplication_window = 10000;
