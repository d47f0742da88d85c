-- Webhook delivery: the durable outbox (one row per event and endpoint) and the log of attempts.

ALTER TABLE webhook_configs ADD COLUMN previous_secret text;
ALTER TABLE webhook_configs ADD COLUMN previous_secret_expires_at timestamptz;
-- Start of the current run of failures; NULL after any success. Auto-disable compares it with the window.
ALTER TABLE webhook_configs ADD COLUMN failing_since timestamptz;
ALTER TABLE webhook_configs ADD COLUMN disabled_reason text;

CREATE TABLE webhook_deliveries (
    id              uuid        PRIMARY KEY,
    config_id       uuid        NOT NULL REFERENCES webhook_configs (id) ON DELETE CASCADE,
    instance_id     uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    -- The exact body sent on every attempt, so the signed bytes never change between retries.
    payload         text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'delivering', 'succeeded', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    claim_token     uuid,
    created_at      timestamptz NOT NULL,
    last_attempt_at timestamptz,
    CONSTRAINT webhook_deliveries_event_key UNIQUE (config_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_claim_idx ON webhook_deliveries (claim_token);
CREATE INDEX webhook_deliveries_config_idx ON webhook_deliveries (config_id, id);

CREATE TABLE webhook_attempts (
    id               uuid        PRIMARY KEY,
    delivery_id      uuid        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    config_id        uuid        NOT NULL,
    attempt          integer     NOT NULL CHECK (attempt >= 1),
    at               timestamptz NOT NULL,
    status_code      integer,
    latency_ms       bigint      NOT NULL CHECK (latency_ms >= 0),
    error            text,
    response_excerpt text        CHECK (response_excerpt IS NULL OR length(response_excerpt) <= 1024)
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempt);
CREATE INDEX webhook_attempts_config_idx ON webhook_attempts (config_id, delivery_id);
