-- pixelpipe schema, version 10: consent (issue 19), part two.
--
-- `account_settings.aggregate_opens`: whether sends not allowed individual tracking get the aggregate pixel
-- (api/account_settings.py: true unless the sender turns it off).
--
-- The sends tracked individually (`sends.tracking` = 'individual', 0009) in their own rollup rows: rollup
-- 'messages', kind 'sent', who 'individual', the same buckets and message hashes as 0002's 'sent' rows (who
-- ''), so a campaign's individually tracked sends (the rates' denominator, api/sql/campaigns.py) are read
-- exactly as every other message set. A message registered again may be tracked otherwise than before
-- (do-not-track lifted, consent granted): it is in this set once any of its registrations was tracked.
-- Readers of the 'sent' rows that do not filter on `who` see these rows too: they are a subset of the ''
-- rows of the same bucket, so a union (the delivery numbers, the unregistered messages) is unchanged; a sum
-- keeps to who = '' (the campaign list does).
--
-- Existing data stays exact: every send stored before this version was tracked as it is counted today
-- (`sends.tracking` defaults to 'individual'), so the backfill copies 0002's 'sent' rows as they are (their
-- sets, buckets and times), not the sends (which may have expired before their rollup rows). The view is
-- made first, so a send inserted during the copy is in the set once or twice, never missed (sets: harmless).
-- Erasure and retention cover these rows as every 'messages' row (api/sql/rollup_upkeep.py).

ALTER TABLE {db}.account_settings ADD COLUMN IF NOT EXISTS aggregate_opens Bool DEFAULT true;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollups_from_tracked_sends TO {db}.rollups AS
SELECT account, campaign_id, 'messages' AS rollup, 'sent' AS kind, 'individual' AS who, '' AS label,
       toDateTime(0, 'UTC') AS at, toUInt16(cityHash64(message_id) % 4096) AS bucket,
       emptyArrayUInt64() AS hits, groupUniqArray(cityHash64(message_id)) AS messages,
       toInt16(-1) AS link_index, toDateTime(max(sent_at), 'UTC') AS last_at
FROM {db}.sends
WHERE tracking = 'individual'
GROUP BY account, campaign_id, bucket;

INSERT INTO {db}.rollups
SELECT account, campaign_id, rollup, kind, 'individual' AS who, label, at, bucket, hits, messages, link_index,
       last_at
FROM {db}.rollups
WHERE rollup = 'messages' AND kind = 'sent' AND who = '';
