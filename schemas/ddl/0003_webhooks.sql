-- Webhooks: the endpoints each account registered, and the log of every delivery attempt.
--
-- webhooks: one row per change; the newest (by updated_at) wins. A delete writes a row with deleted = true, so
-- readers ask `FINAL ... WHERE NOT deleted`. The table is tiny (a few rows per account) and read whole by the
-- dispatchers every second, so FINAL costs nothing. The dispatcher needs the secret itself to sign, so it is
-- stored encrypted, not hashed: `enc:v1:<key id>:<AES-256-GCM sealed>` under a key derived from PIXELPIPE_SECRET
-- (schemas/webhook_secrets.py). Rows written before that hold the plain `whsec_…` value; both are read.
--
-- webhook_deliveries: append-only, one row per attempt (never updated: ClickHouse is poor at per-row state).
-- The state a retry needs lives in the dispatcher's own outbox (SQLite in the data dir); this log is what
-- operators and `GET /v1/webhooks/{id}/deliveries` read.
CREATE TABLE IF NOT EXISTS {db}.webhooks
(
    account     LowCardinality(String),
    webhook_id  String,
    url         String,
    events      Array(LowCardinality(String)),
    secret      String,
    created_at  DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC'),
    deleted     Bool DEFAULT false
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (account, webhook_id);

CREATE TABLE IF NOT EXISTS {db}.webhook_deliveries
(
    account          LowCardinality(String),
    webhook_id       String,
    delivery_id      String,
    notice_id        String,
    message_id       String,
    type             LowCardinality(String),
    attempt          UInt16,
    status           LowCardinality(String),
    response_code    UInt16,
    error            String,
    attempted_at     DateTime64(3, 'UTC'),
    next_attempt_at  Nullable(DateTime64(3, 'UTC')),
    duration_ms      UInt32
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (account, webhook_id, attempted_at)
TTL toDateTime(attempted_at) + INTERVAL 30 DAY;
