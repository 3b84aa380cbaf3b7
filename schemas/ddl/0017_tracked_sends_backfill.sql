-- pixelpipe schema, version 17: the individually tracked sends stored before 0010, counted.
--
-- 0010's backfill meant to copy 0002's 'sent' rows (who '') into the 'individual' set, but its SELECT names
-- its output column `who` ('individual' AS who), and in ClickHouse an alias of the SELECT list hides the
-- column of that name in WHERE: its `who = ''` compared 'individual' with '' and copied nothing. A store with
-- sends from before 0010 then counted 0 tracked sends for them, and every rate over tracked sends was 0.
--
-- This fills the set from the sends themselves, as 0010's view does for every send since: the sends tracked
-- individually (`tracking` = 'individual', which every send stored before 0009 is by default), the same
-- buckets and message hashes. A send already in the set (inserted since 0010) is in it twice: sets, harmless;
-- running this again (a start cut short) likewise. Sends past their retention are gone, and so (the same TTL,
-- api/sql/rollup_upkeep.py) are their rollup rows.

INSERT INTO {db}.rollups
SELECT account, campaign_id, 'messages' AS rollup, 'sent' AS kind, 'individual' AS who, '' AS label,
       toDateTime(0, 'UTC') AS at, toUInt16(cityHash64(message_id) % 4096) AS bucket,
       emptyArrayUInt64() AS hits, groupUniqArray(cityHash64(message_id)) AS messages,
       toInt16(-1) AS link_index, toDateTime(max(sent_at), 'UTC') AS last_at
FROM {db}.sends
WHERE tracking = 'individual'
GROUP BY account, campaign_id, bucket;
