-- pixelpipe schema, version 2: rollups for the analyst API, fed by materialized views at insert time, so an
-- answer is as fresh as `events` (a view runs inside the insert) and costs rows per campaign, not per hit.
--
-- Exact, not approximate. A replayed hit may be stored twice (see 0001), so a rollup cannot keep counts:
-- it keeps sets. Each row holds the distinct 64-bit hashes of its hits (cityHash64(hit_id)) and of its
-- messages (cityHash64(message_id)) in SimpleAggregateFunction(groupUniqArrayArray) columns, which merge
-- as a set union; a hit stored twice is the same element twice. The API (api/sql/exact.py) sums
-- the array lengths of keys that have one row and unions only keys that still have several (parts not yet
-- merged, or a replay). Keys are chosen so sets never overlap across keys: hits by the hour or minute they
-- were received (it never changes), messages by a bucket of their hash. Collisions of 64-bit hashes inside
-- one row's set are the only inexactness (p < 1e-9 per campaign).
--
-- One table for every rollup, so that each insert into events writes one more part, not one per rollup
-- (each part costs ~10 ms on the embedded engine; the processor flushes several times a second). A row's
-- `rollup` says which it is (also a keyword: in an ad-hoc GROUP BY or ORDER BY write it `rollup`, quoted):
--
--   rollup     kind              who                 label                 at            bucket            sets
--   hour       open, click       verdict             reason                hour          0                 hits, messages
--   minute     open, click       verdict             reason                minute        0                 hits, messages
--   messages   sent, open, click '' (sent), verdict, ''                    0             hash % 4096       messages
--                                'any' (opens)
--   country, client, device, os: open, click; verdict; the value; 0; hash % 64; hits, messages
--   url        click             verdict             destination URL       0             hash % 64         hits, messages
--   slot       open              human               time zone             quarter hour  0                 hits
--
-- hour and url rows include the filtered hits (bots, invalid tokens); `slot` rows exist per campaign and,
-- under campaign_id '', for the whole account (best time to send; ClickHouse converts only to a constant
-- zone, so the API converts quarter hours, which fit every zone's offset, e.g. +05:30 and +05:45). The
-- messages buckets (4096) keep the rows per campaign in the thousands while a second's new opens touch, and
-- so re-union, only a small share of them; 'any' rows are the machine-open switch's unique opens, which a
-- sum of the human and machine sets would count twice.
--
-- Rows written twice during this migration's backfill (an insert between CREATE VIEW and the INSERT ...
-- SELECT below) are harmless for the same reason as replays. Erasure and retention must include this table
-- (api/sql/rollup_upkeep.py: rollup_retention, rollup_erasure).

CREATE TABLE IF NOT EXISTS {db}.rollups
(
    account     LowCardinality(String),
    campaign_id String,
    rollup      LowCardinality(String),
    kind        LowCardinality(String),
    who         LowCardinality(String),
    label       String,
    at          DateTime('UTC'),
    bucket      UInt16,
    hits        SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    messages    SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    link_index  SimpleAggregateFunction(min, Int16),
    last_at     SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (account, campaign_id, rollup, kind, who, label, at, bucket)
TTL last_at + INTERVAL 3 MONTH DELETE WHERE who IN ('bot', 'invalid'), last_at + INTERVAL 13 MONTH;

-- Source columns are renamed in the subquery: the rows' own names (campaign_id, kind, ...) come from the
-- tuple, and ClickHouse would otherwise read them as aliases of themselves.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollups_from_events TO {db}.rollups AS
SELECT a AS account, r.1 AS campaign_id, r.2 AS rollup, r.3 AS kind, r.4 AS who, r.5 AS label, r.6 AS at,
       r.7 AS bucket, groupUniqArrayIf(hit, r.8) AS hits, groupUniqArrayIf(message, r.9) AS messages,
       min(li) AS link_index, max(received) AS last_at
FROM
(
    SELECT account AS a, campaign_id AS c, toString(kind) AS k, verdict AS v, reason AS why, country AS geo,
           client AS cl, device AS dev, os AS sys, url AS u, time_zone AS tz, link_index AS li,
           cityHash64(hit_id) AS hit, cityHash64(message_id) AS message, toDateTime(received_at, 'UTC') AS received
    FROM {db}.events
)
ARRAY JOIN arrayFilter(x -> x.2 != '', [
    (c, 'hour', k, v, toString(why), toStartOfHour(received), toUInt16(0), true, true),
    (c, 'minute', k, v, toString(why), toStartOfMinute(received), toUInt16(0), true, true),
    (c, 'messages', k, v, '', toDateTime(0, 'UTC'), toUInt16(message % 4096), false, true),
    (c, if(k = 'open', 'messages', ''), k, 'any', '', toDateTime(0, 'UTC'), toUInt16(message % 4096), false, true),
    (c, 'country', k, v, toString(geo), toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, 'client', k, v, toString(cl), toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, 'device', k, v, toString(dev), toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, 'os', k, v, toString(sys), toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, if(k = 'click', 'url', ''), k, v, u, toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, if(k = 'open' AND v = 'human' AND tz != '', 'slot', ''), k, v, toString(tz),
        toStartOfFifteenMinutes(received), toUInt16(0), true, false),
    ('', if(k = 'open' AND v = 'human' AND tz != '', 'slot', ''), k, v, toString(tz),
        toStartOfFifteenMinutes(received), toUInt16(0), true, false)
]) AS r
GROUP BY a, r.1, r.2, r.3, r.4, r.5, r.6, r.7;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollups_from_filtered TO {db}.rollups AS
SELECT a AS account, r.1 AS campaign_id, r.2 AS rollup, r.3 AS kind, r.4 AS who, r.5 AS label, r.6 AS at,
       r.7 AS bucket, groupUniqArray(hit) AS hits, groupUniqArray(message) AS messages,
       min(li) AS link_index, max(received) AS last_at
FROM
(
    SELECT account AS a, campaign_id AS c, toString(kind) AS k, verdict AS v, reason AS why, url AS u,
           link_index AS li, cityHash64(hit_id) AS hit, cityHash64(message_id) AS message,
           toDateTime(received_at, 'UTC') AS received
    FROM {db}.filtered_hits
    WHERE campaign_id != ''
)
ARRAY JOIN arrayFilter(x -> x.2 != '', [
    (c, 'hour', k, v, toString(why), toStartOfHour(received), toUInt16(0)),
    (c, if(k = 'click', 'url', ''), k, v, u, toDateTime(0, 'UTC'), toUInt16(message % 64))
]) AS r
GROUP BY a, r.1, r.2, r.3, r.4, r.5, r.6, r.7;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollups_from_sends TO {db}.rollups AS
SELECT account, campaign_id, 'messages' AS rollup, 'sent' AS kind, '' AS who, '' AS label,
       toDateTime(0, 'UTC') AS at, toUInt16(cityHash64(message_id) % 4096) AS bucket,
       emptyArrayUInt64() AS hits, groupUniqArray(cityHash64(message_id)) AS messages,
       toInt16(-1) AS link_index, toDateTime(max(sent_at), 'UTC') AS last_at
FROM {db}.sends
GROUP BY account, campaign_id, bucket;

-- When each campaign was sent: the order of the campaign list.
CREATE TABLE IF NOT EXISTS {db}.campaign_catalog
(
    account       LowCardinality(String),
    campaign_id   String,
    first_sent_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_sent_at  SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (account, campaign_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.campaign_catalog_from_sends TO {db}.campaign_catalog AS
SELECT account, campaign_id, min(sent_at) AS first_sent_at, max(sent_at) AS last_sent_at
FROM {db}.sends
GROUP BY account, campaign_id;

-- Backfill what was stored before this migration (the views only see new inserts): the same SELECTs.
INSERT INTO {db}.rollups
SELECT a AS account, r.1 AS campaign_id, r.2 AS rollup, r.3 AS kind, r.4 AS who, r.5 AS label, r.6 AS at,
       r.7 AS bucket, groupUniqArrayIf(hit, r.8) AS hits, groupUniqArrayIf(message, r.9) AS messages,
       min(li) AS link_index, max(received) AS last_at
FROM
(
    SELECT account AS a, campaign_id AS c, toString(kind) AS k, verdict AS v, reason AS why, country AS geo,
           client AS cl, device AS dev, os AS sys, url AS u, time_zone AS tz, link_index AS li,
           cityHash64(hit_id) AS hit, cityHash64(message_id) AS message, toDateTime(received_at, 'UTC') AS received
    FROM {db}.events
)
ARRAY JOIN arrayFilter(x -> x.2 != '', [
    (c, 'hour', k, v, toString(why), toStartOfHour(received), toUInt16(0), true, true),
    (c, 'minute', k, v, toString(why), toStartOfMinute(received), toUInt16(0), true, true),
    (c, 'messages', k, v, '', toDateTime(0, 'UTC'), toUInt16(message % 4096), false, true),
    (c, if(k = 'open', 'messages', ''), k, 'any', '', toDateTime(0, 'UTC'), toUInt16(message % 4096), false, true),
    (c, 'country', k, v, toString(geo), toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, 'client', k, v, toString(cl), toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, 'device', k, v, toString(dev), toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, 'os', k, v, toString(sys), toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, if(k = 'click', 'url', ''), k, v, u, toDateTime(0, 'UTC'), toUInt16(message % 64), true, true),
    (c, if(k = 'open' AND v = 'human' AND tz != '', 'slot', ''), k, v, toString(tz),
        toStartOfFifteenMinutes(received), toUInt16(0), true, false),
    ('', if(k = 'open' AND v = 'human' AND tz != '', 'slot', ''), k, v, toString(tz),
        toStartOfFifteenMinutes(received), toUInt16(0), true, false)
]) AS r
GROUP BY a, r.1, r.2, r.3, r.4, r.5, r.6, r.7;

INSERT INTO {db}.rollups
SELECT a AS account, r.1 AS campaign_id, r.2 AS rollup, r.3 AS kind, r.4 AS who, r.5 AS label, r.6 AS at,
       r.7 AS bucket, groupUniqArray(hit) AS hits, groupUniqArray(message) AS messages,
       min(li) AS link_index, max(received) AS last_at
FROM
(
    SELECT account AS a, campaign_id AS c, toString(kind) AS k, verdict AS v, reason AS why, url AS u,
           link_index AS li, cityHash64(hit_id) AS hit, cityHash64(message_id) AS message,
           toDateTime(received_at, 'UTC') AS received
    FROM {db}.filtered_hits
    WHERE campaign_id != ''
)
ARRAY JOIN arrayFilter(x -> x.2 != '', [
    (c, 'hour', k, v, toString(why), toStartOfHour(received), toUInt16(0)),
    (c, if(k = 'click', 'url', ''), k, v, u, toDateTime(0, 'UTC'), toUInt16(message % 64))
]) AS r
GROUP BY a, r.1, r.2, r.3, r.4, r.5, r.6, r.7;

INSERT INTO {db}.rollups
SELECT account, campaign_id, 'messages' AS rollup, 'sent' AS kind, '' AS who, '' AS label,
       toDateTime(0, 'UTC') AS at, toUInt16(cityHash64(message_id) % 4096) AS bucket,
       emptyArrayUInt64() AS hits, groupUniqArray(cityHash64(message_id)) AS messages,
       toInt16(-1) AS link_index, toDateTime(max(sent_at), 'UTC') AS last_at
FROM {db}.sends
GROUP BY account, campaign_id, bucket;

INSERT INTO {db}.campaign_catalog
SELECT account, campaign_id, min(sent_at), max(sent_at) FROM {db}.sends GROUP BY account, campaign_id;
