-- pixelpipe schema, version 15: the messages opened by something other than Apple's prefetch, per bucket of
-- message hashes (issue 20's MPP-adjusted open rate, api/sql/open_rates.py).
--
-- A rollup row `rollup` 'opened', kind 'open', who 'not_mpp', bucket = message hash % 4096 (the buckets of
-- 0002's 'messages' rows), holding the set of hashes of the messages with an open that is a person's or
-- another machine's than Apple Mail Privacy Protection's prefetch (machine opens whose reason is not one
-- of `schemas.verdicts.MPP_REASONS`: 'apple_mpp', 'apple_mpp_asn', held equal by a unit test). Every such
-- message is also in the bucket's 'any' set (0002: opened by anyone), so a bucket's MPP-only messages are
-- length('any') - length('not_mpp'): a difference of two exact set sizes, no per-message pass. Implied opens
-- need no new set: the 'any' set and the people's 'click' set of the bucket (0002) give them. The API counts
-- both per bucket and again only where the parts changed (`api.open_numbers`). A rollup of its own, so that
-- no other reader of the 'messages' rows (the summary's exact read, the delivery numbers) reads more rows.
--
-- The row is one more tuple of 0002's view over `events`, not a view of its own: each insert into `events`
-- still writes one part into the rollups, not two (a part costs ~10 ms on the embedded engine). ClickHouse
-- cannot change a view's query in place, so the new view is made first and the old one dropped after: an
-- insert in between is rolled up twice (sets: harmless, as replays), never missed. Then the existing opens'
-- 'not_mpp' rows are filled from `events` (an open stored during the copy is in the set once or twice).
-- Erasure and retention cover these rows as every rollup row (api/sql/rollup_upkeep.py). A store where the
-- opens have outlived their rollup rows or the reverse (retention) counts what both still hold.

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollups_from_events_15 TO {db}.rollups AS
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
    (c, if(k = 'open' AND (v != 'machine' OR toString(why) NOT IN ('apple_mpp', 'apple_mpp_asn')), 'opened', ''),
        k, 'not_mpp', '', toDateTime(0, 'UTC'), toUInt16(message % 4096), false, true),
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

DROP VIEW IF EXISTS {db}.rollups_from_events;

-- (The source columns are renamed in the subquery: the row's own `kind` would otherwise shadow the events'.)
INSERT INTO {db}.rollups
SELECT a AS account, c AS campaign_id, 'opened' AS rollup, 'open' AS kind, 'not_mpp' AS who, '' AS label,
       toDateTime(0, 'UTC') AS at, toUInt16(message % 4096) AS bucket,
       emptyArrayUInt64() AS hits, groupUniqArray(message) AS messages,
       toInt16(-1) AS link_index, toDateTime(max(received), 'UTC') AS last_at
FROM
(
    SELECT account AS a, campaign_id AS c, cityHash64(message_id) AS message, received_at AS received
    FROM {db}.events
    WHERE kind = 'open' AND (verdict != 'machine' OR toString(reason) NOT IN ('apple_mpp', 'apple_mpp_asn'))
)
GROUP BY a, c, bucket;
