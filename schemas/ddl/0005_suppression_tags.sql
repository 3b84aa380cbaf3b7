-- Suppressions by keyed tags, never by address (replaces 0004's `suppressions`, whose plain rows are turned
-- into tags and the table dropped at start, in Python, where the keyring is: api.privacy.migrate_plain_suppressions).
--
-- A recipient is recognised by their tag (schemas.tokens.recipient_tag) under each signing key the keyring
-- held when the change was made: one row per (account, tag), each listing every tag of that recipient, so the
-- newest change by any one tag finds the others (an opt-in after a key rotation lifts the suppression under
-- the retired keys too). The newest row of a tag says whether hits carrying it are recorded.
CREATE TABLE IF NOT EXISTS {db}.suppression_tags
(
    account         LowCardinality(String),
    tag             String,
    recipient_tags  Array(String),
    tracking        Bool,
    reason          LowCardinality(String),
    updated_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (account, tag);

-- Erasure rewrites the parts that hold a recipient (api.privacy: a DELETE by message id, then APPLY DELETED
-- MASK); the parts it replaces must leave the disk soon after, not after the server's default (480 s, then a cleanup
-- thread that may sleep up to 300 s). 60 s still covers the OS writing the new part back (30 s by default)
-- before the old one goes. Together these bound api.privacy.ERASED_FROM_DISK_WITHIN_S.
ALTER TABLE {db}.sends MODIFY SETTING old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;
ALTER TABLE {db}.events MODIFY SETTING old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;
ALTER TABLE {db}.filtered_hits MODIFY SETTING old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;
ALTER TABLE {db}.rollups MODIFY SETTING old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;
ALTER TABLE {db}.suppression_tags MODIFY SETTING old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;

-- Sends registered before the one rule for a recipient (schemas.recipient: trimmed, lower case) take its form,
-- so lookups by the canonical address find them. In SQL, without naming any address (the mutation's text is
-- kept on disk); lowerUTF8 and trimBoth agree with Python's rule on every ASCII address, and erasure still
-- finds any other old spelling (api.privacy).
ALTER TABLE {db}.sends UPDATE recipient = lowerUTF8(trimBoth(recipient)) WHERE recipient != lowerUTF8(trimBoth(recipient));
