-- Do-not-track and erasure. One row per (account, recipient); the newest row says whether hits of that
-- recipient are recorded. Suppressed addresses are kept (like any mail suppression list) so that a later
-- hit of an erased recipient's old email is not recorded again.
CREATE TABLE IF NOT EXISTS {db}.suppressions
(
    account     LowCardinality(String),
    recipient   String,
    tracking    Bool,
    reason      LowCardinality(String),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (account, recipient);
