-- pixelpipe schema, version 11: aggregate opens (issue 19). One row per fetch of a campaign pixel
-- (`schemas.aggregate_opens`: a `TokenKind.AGGREGATE_OPEN` token names an account and a campaign, nobody),
-- counted per campaign without identifying anyone: the hour, who opened (person / machine / bot, from the
-- hits' own classification, done in flight), the classification's reason (a kind of client, never a person)
-- and a 64-bit hash of the open's random id. No address, user agent, place, message or recipient: there is
-- nothing to erase per person, and these opens cannot be told apart per person (not unique opens).
--
-- Loaded exactly once with the hits of the same bus batch (an insert_deduplication_token of its own per batch,
-- then the offset commit) and keyed by the hash, so an open read twice is one row once merged; the API counts
-- uniqExact(hit), exact before merges too. Version 10 is helper c3-consent's (tracked sends).

CREATE TABLE IF NOT EXISTS {db}.aggregate_opens
(
    account       LowCardinality(String),
    campaign_id   String,
    hour          DateTime('UTC'),
    who           LowCardinality(String),
    reason        LowCardinality(String),
    hit           UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (account, campaign_id, hour, hit)
TTL hour + INTERVAL 13 MONTH
SETTINGS non_replicated_deduplication_window = 10000;
