-- pixelpipe schema, version 8: read time (issue 18). One row per held pixel of a timed open
-- (`schemas.reads.ReadRecord`): the open it measured (`read_of` = its hit id in `events` or `filtered_hits`),
-- how long it stayed on screen and how the measurement ended.
--
-- Loaded exactly once with the hits of the same bus batch (an insert_deduplication_token of its own per
-- batch, then the offset commit) and keyed by `read_of`, so a record read twice is one row. Whether a
-- measurement is a person's (read / skimmed / glanced) or `unknown` depends on its open's classification,
-- joined at query time (`schemas.reads.category_sql`). Personal data like the hits: erasure deletes the rows
-- (by the erased messages), retention drops them with the counted hits (`Store.apply_retention`), do-not-track
-- keeps them out (the processors drop a suppressed recipient's read records as they drop their hits).

CREATE TABLE IF NOT EXISTS {db}.reads
(
    read_of       String,
    account       LowCardinality(String),
    campaign_id   String,
    message_id    String,
    opened_at     DateTime64(3, 'UTC'),
    ended_at      DateTime64(3, 'UTC'),
    read_ms       UInt32,
    `end`         LowCardinality(String),
    source        String,
    INDEX idx_message message_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(opened_at)
ORDER BY (account, campaign_id, message_id, read_of)
TTL toDateTime(opened_at) + INTERVAL 13 MONTH
SETTINGS non_replicated_deduplication_window = 10000, old_parts_lifetime = 60, cleanup_delay_period = 10,
    max_cleanup_delay_period = 30;
