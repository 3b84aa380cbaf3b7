-- pixelpipe schema, version 12: engagement per recipient (issue 20).
--
-- Who a recipient is, in the store: their keyed tag (`schemas.tokens.recipient_tag` under the keyring's
-- signing key, lowercase hex), as tokens carry it; '' where unknown (rows stored before this version, hits
-- of invalid tokens). Sends (registration computes it), events and filtered hits (the raw hit's tag) and
-- delivery events (the matched send's tag) gain `recipient_tag`. Rows stored before this version get theirs
-- at start, from Python (an HMAC cannot be computed in SQL): `api.engagement_backfill`, which also adds
-- them to the engagement rollup. '' stays on invalid tokens' hits and unmatched delivery events.
--
-- `engagement`: one row per (account, recipient tag) once merged, fed by materialized views at insert time,
-- exact like 0002's rollups: each column is the set of 64-bit hashes of messages (cityHash64(message_id)) or
-- hits (cityHash64(hit_id)) in a SimpleAggregateFunction(groupUniqArrayArray) column, merged as a set union,
-- so a replayed hit or a provider's retried event is the same element twice. Last times are max(). The
-- recipient's address (max(): the views of events and deliveries write '', which never wins over an
-- address) lets a segment page show it without scanning sends.
--
--   sent, tracked   messages sent; those tracked individually (`sends.tracking` = 'individual', 0009)
--   delivered       messages with a `delivered` event
--   human_opened    messages opened by a person; human_open_hits: those opens
--   clicked         messages clicked by a person; click_hits: those clicks
--   machine_opened  messages opened by a machine (prefetch, gateway, cloud scanner)
--   mpp_opened      messages opened by Apple Mail Privacy Protection's prefetch (reasons apple_mpp,
--                   apple_mpp_asn: processors/classify.py)
--   hard_bounced    messages with a hard bounce; complained: with a complaint
--
-- Ordered by (account, recipient_tag): a segment reads it in key order with LIMIT. Erasure deletes the
-- recipient's tags' rows (api.privacy); retention drops rows whose newest activity (`last_at`) is older than
-- the events' retention (api/sql/rollup_upkeep.py: engagement_retention).

ALTER TABLE {db}.sends ADD COLUMN IF NOT EXISTS recipient_tag String DEFAULT '';
ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS recipient_tag String DEFAULT '';
ALTER TABLE {db}.filtered_hits ADD COLUMN IF NOT EXISTS recipient_tag String DEFAULT '';
ALTER TABLE {db}.deliveries ADD COLUMN IF NOT EXISTS recipient_tag String DEFAULT '';

CREATE TABLE IF NOT EXISTS {db}.engagement
(
    account          LowCardinality(String),
    recipient_tag    String,
    recipient        SimpleAggregateFunction(max, String),
    sent             SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    tracked          SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    delivered        SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    human_opened     SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    human_open_hits  SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    clicked          SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    click_hits       SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    machine_opened   SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    mpp_opened       SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    hard_bounced     SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    complained       SimpleAggregateFunction(groupUniqArrayArray, Array(UInt64)),
    last_sent        SimpleAggregateFunction(max, DateTime('UTC')),
    last_open        SimpleAggregateFunction(max, DateTime('UTC')),
    last_click       SimpleAggregateFunction(max, DateTime('UTC')),
    last_at          SimpleAggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (account, recipient_tag)
TTL last_at + INTERVAL 13 MONTH
SETTINGS old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.engagement_from_sends TO {db}.engagement AS
SELECT a AS account, t AS recipient_tag, max(r) AS recipient, groupUniqArray(m) AS sent,
       groupUniqArrayIf(m, tr = 'individual') AS tracked, max(s) AS last_sent, max(s) AS last_at
FROM
(
    SELECT account AS a, recipient_tag AS t, recipient AS r, cityHash64(message_id) AS m,
           toString(tracking) AS tr, toDateTime(sent_at, 'UTC') AS s
    FROM {db}.sends
    WHERE recipient_tag != ''
)
GROUP BY a, t;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.engagement_from_events TO {db}.engagement AS
SELECT a AS account, t AS recipient_tag,
       groupUniqArrayIf(m, k = 'open' AND v = 'human') AS human_opened,
       groupUniqArrayIf(h, k = 'open' AND v = 'human') AS human_open_hits,
       groupUniqArrayIf(m, k = 'click' AND v = 'human') AS clicked,
       groupUniqArrayIf(h, k = 'click' AND v = 'human') AS click_hits,
       groupUniqArrayIf(m, k = 'open' AND v = 'machine') AS machine_opened,
       groupUniqArrayIf(m, k = 'open' AND why IN ('apple_mpp', 'apple_mpp_asn')) AS mpp_opened,
       maxIf(received, k = 'open' AND v = 'human') AS last_open,
       maxIf(received, k = 'click' AND v = 'human') AS last_click,
       max(received) AS last_at
FROM
(
    SELECT account AS a, recipient_tag AS t, toString(kind) AS k, toString(verdict) AS v,
           toString(reason) AS why, cityHash64(message_id) AS m, cityHash64(hit_id) AS h,
           toDateTime(received_at, 'UTC') AS received
    FROM {db}.events
    WHERE recipient_tag != ''
)
GROUP BY a, t;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.engagement_from_deliveries TO {db}.engagement AS
SELECT a AS account, t AS recipient_tag,
       groupUniqArrayIf(m, e = 'delivered') AS delivered,
       groupUniqArrayIf(m, e = 'bounce' AND b = 'hard') AS hard_bounced,
       groupUniqArrayIf(m, e = 'complaint') AS complained,
       max(occurred) AS last_at
FROM
(
    SELECT account AS a, recipient_tag AS t, toString(event) AS e, toString(bounce_type) AS b,
           cityHash64(message_id) AS m, toDateTime(occurred_at, 'UTC') AS occurred
    FROM {db}.deliveries
    WHERE recipient_tag != '' AND message_id != ''
)
GROUP BY a, t;
