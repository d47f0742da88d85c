-- Webhook delivery: the durable outbox (one row per event and endpoint) and the log of attempts.

ALTER TABLE webhook_configs ADD COLUMN previous_secret TEXT;
ALTER TABLE webhook_configs ADD COLUMN previous_secret_expires_at TEXT;
-- Start of the current run of failures; NULL after any success. Auto-disable compares it with the window.
ALTER TABLE webhook_configs ADD COLUMN failing_since TEXT;
ALTER TABLE webhook_configs ADD COLUMN disabled_reason TEXT;

CREATE TABLE webhook_deliveries (
    id              BLOB    PRIMARY KEY NOT NULL,
    config_id       BLOB    NOT NULL REFERENCES webhook_configs (id) ON DELETE CASCADE,
    instance_id     BLOB    NOT NULL,
    event_id        BLOB    NOT NULL,
    event_type      TEXT    NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    -- The exact body sent on every attempt, so the signed bytes never change between retries.
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivering', 'succeeded', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT    NOT NULL,
    lease_until     TEXT,
    claim_token     BLOB,
    created_at      TEXT    NOT NULL,
    last_attempt_at TEXT,
    UNIQUE (config_id, event_id)
) STRICT;
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_claim_idx ON webhook_deliveries (claim_token);
CREATE INDEX webhook_deliveries_config_idx ON webhook_deliveries (config_id, id);

CREATE TABLE webhook_attempts (
    id               BLOB    PRIMARY KEY NOT NULL,
    delivery_id      BLOB    NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    config_id        BLOB    NOT NULL,
    attempt          INTEGER NOT NULL CHECK (attempt >= 1),
    at               TEXT    NOT NULL,
    status_code      INTEGER,
    latency_ms       INTEGER NOT NULL CHECK (latency_ms >= 0),
    error            TEXT,
    response_excerpt TEXT    CHECK (response_excerpt IS NULL OR length(response_excerpt) <= 1024)
) STRICT;
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempt);
CREATE INDEX webhook_attempts_config_idx ON webhook_attempts (config_id, delivery_id);
