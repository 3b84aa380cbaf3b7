-- pixelpipe schema, version 9: consent and per-account settings (issue 19).
--
-- `consent_events`: every consent change of a recipient (`schemas.consent.CONSENT_COLUMNS`), never deleted
-- but by erasure: the newest row of a tag is the recipient's state, the others its history (the proof). Keyed
-- by the recipient's tags under every key of the keyring, as `suppression_tags` (0005), never the address.
-- `account_settings`: the newest row of an account holds its consent mode and its tracking base URL (a branded
-- domain: pixel, click and preferences links under the sender's own host, a CNAME to the edge).
-- `sends.tracking`: how each send was tracked (`schemas.consent.Tracking`), so rates can use only the sends
-- tracked individually as their denominator.

CREATE TABLE IF NOT EXISTS {db}.consent_events
(
    account         LowCardinality(String),
    tag             String,
    recipient_tags  Array(String),
    state           LowCardinality(String),
    how             LowCardinality(String),
    source          String,
    evidence        String,
    at              DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (account, tag, at)
SETTINGS old_parts_lifetime = 60, cleanup_delay_period = 10, max_cleanup_delay_period = 30;

CREATE TABLE IF NOT EXISTS {db}.account_settings
(
    account             LowCardinality(String),
    consent_mode        LowCardinality(String),
    tracking_base_url   String,
    updated_at          DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY account;

ALTER TABLE {db}.sends ADD COLUMN IF NOT EXISTS tracking LowCardinality(String) DEFAULT 'individual';
