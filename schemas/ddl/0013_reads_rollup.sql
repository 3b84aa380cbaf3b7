-- pixelpipe schema, version 13: read time in the rollups' parts (issue 18). Every insert into `reads` also
-- writes a `reads` row of its campaign into the rollups (per hour of the opens: the set of the reads' open
-- hit id hashes and message hashes), so the parts that hold a campaign's rollup rows change whenever its read
-- records do. Campaign stats are kept while those parts stay the same (`api.campaign_reads`, signed by
-- `api.sql.campaigns.campaign_parts` over the rollups alone): their read-time numbers, read from `reads`, are
-- then never stale, at no cost to the signature. No API number reads these rows (every rollup query names
-- its `rollup`); an erasure takes their hashes out with the others (`api.sql.rollup_upkeep.rollup_erasure`,
-- given the erased reads' ids), and they age out with the rollups (`last_at`: the latest open of the hour).

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollups_from_reads TO {db}.rollups AS
SELECT account, campaign_id, 'reads' AS rollup, 'open' AS kind, '' AS who, '' AS label,
       toStartOfHour(toDateTime(opened_at, 'UTC')) AS at, toUInt16(0) AS bucket,
       groupUniqArray(cityHash64(read_of)) AS hits, groupUniqArray(cityHash64(message_id)) AS messages,
       toInt16(-1) AS link_index, toDateTime(max(opened_at), 'UTC') AS last_at
FROM {db}.reads
GROUP BY account, campaign_id, at;
