-- The data model of shared/design/data-model.md, SQLite flavour.
-- Ids are UUIDv7 stored as 16-byte BLOBs (byte order = time order), times are RFC 3339 TEXT in UTC written by the
-- gateway (never CURRENT_TIMESTAMP, whose format differs), JSON is TEXT checked with json_valid.
-- Keep in step with migrations/postgres: a tidy test checks both folders hold the same versions.

CREATE TABLE subscriptions (
    id                BLOB    PRIMARY KEY NOT NULL,
    name              TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    tier              TEXT    NOT NULL CHECK (tier IN ('free', 'starter', 'pro', 'enterprise')),
    max_instances     INTEGER NOT NULL CHECK (max_instances >= 0),
    is_active         INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    current_instances INTEGER NOT NULL DEFAULT 0 CHECK (current_instances >= 0),
    monthly_messages  INTEGER NOT NULL CHECK (monthly_messages >= 0),
    messages_used     INTEGER NOT NULL DEFAULT 0 CHECK (messages_used >= 0),
    last_usage_reset  TEXT    NOT NULL
) STRICT;

CREATE TABLE users (
    id              BLOB    PRIMARY KEY NOT NULL,
    email           TEXT    NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254),
    password        TEXT    NOT NULL,
    name            TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role            TEXT    NOT NULL CHECK (role IN ('admin', 'owner', 'member')),
    subscription_id BLOB    REFERENCES subscriptions (id) ON DELETE RESTRICT,
    is_active       INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    last_login_at   TEXT,
    CHECK ((role = 'admin') = (subscription_id IS NULL))
) STRICT;
CREATE INDEX users_subscription_idx ON users (subscription_id, id);

CREATE TABLE instances (
    id                   BLOB    PRIMARY KEY NOT NULL,
    name                 TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    subscription_id      BLOB    NOT NULL REFERENCES subscriptions (id) ON DELETE RESTRICT,
    created_by_id        BLOB    REFERENCES users (id) ON DELETE SET NULL,
    driver               TEXT    NOT NULL CHECK (driver IN ('sandbox', 'whatsapp')),
    status               TEXT    NOT NULL DEFAULT 'created' CHECK (status IN
                             ('created', 'connecting', 'qr', 'connected', 'disconnected', 'logged_out', 'replaced',
                              'banned', 'failed')),
    phone                TEXT,
    display_name         TEXT,
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL,
    last_connected_at    TEXT,
    last_disconnected_at TEXT,
    settings             TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
    is_active            INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    qr_code              TEXT,
    qr_code_expiry       TEXT,
    connection_attempts  INTEGER NOT NULL DEFAULT 0 CHECK (connection_attempts >= 0),
    last_error           TEXT,
    last_error_at        TEXT,
    UNIQUE (subscription_id, name)
) STRICT;
CREATE INDEX instances_subscription_idx ON instances (subscription_id, id);
CREATE INDEX instances_created_by_idx ON instances (created_by_id);

CREATE TABLE api_keys (
    id           BLOB    PRIMARY KEY NOT NULL,
    instance_id  BLOB    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    key_hash     BLOB    NOT NULL UNIQUE,
    permissions  TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(permissions)),
    is_active    INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    usage_count  INTEGER NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
    rate_limit   INTEGER CHECK (rate_limit > 0)
) STRICT;
CREATE INDEX api_keys_instance_idx ON api_keys (instance_id, id);

CREATE TABLE message_stats (
    id                BLOB    PRIMARY KEY NOT NULL,
    instance_id       BLOB    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    date              TEXT    NOT NULL CHECK (date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    messages_sent     INTEGER NOT NULL DEFAULT 0 CHECK (messages_sent >= 0),
    messages_received INTEGER NOT NULL DEFAULT 0 CHECK (messages_received >= 0),
    messages_failed   INTEGER NOT NULL DEFAULT 0 CHECK (messages_failed >= 0),
    api_calls         INTEGER NOT NULL DEFAULT 0 CHECK (api_calls >= 0),
    UNIQUE (instance_id, date)
) STRICT;

CREATE TABLE contacts (
    id                  BLOB    PRIMARY KEY NOT NULL,
    instance_id         BLOB    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    jid                 TEXT    NOT NULL CHECK (length(jid) BETWEEN 3 AND 320),
    name                TEXT,
    notify              TEXT,
    is_blocked          INTEGER NOT NULL DEFAULT 0 CHECK (is_blocked IN (0, 1)),
    is_group            INTEGER NOT NULL DEFAULT 0 CHECK (is_group IN (0, 1)),
    group_admin         INTEGER NOT NULL DEFAULT 0 CHECK (group_admin IN (0, 1)),
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    last_message_at     TEXT,
    profile_picture_url TEXT,
    status              TEXT,
    UNIQUE (instance_id, jid)
) STRICT;
CREATE INDEX contacts_instance_idx ON contacts (instance_id, id);

CREATE TABLE webhook_configs (
    id             BLOB    PRIMARY KEY NOT NULL,
    instance_id    BLOB    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    url            TEXT    NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events         TEXT    NOT NULL DEFAULT '["*"]' CHECK (json_valid(events)),
    secret         TEXT    NOT NULL,
    is_active      INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    total_sent     INTEGER NOT NULL DEFAULT 0 CHECK (total_sent >= 0),
    total_failed   INTEGER NOT NULL DEFAULT 0 CHECK (total_failed >= 0),
    last_sent_at   TEXT,
    last_failed_at TEXT,
    last_error     TEXT
) STRICT;
CREATE INDEX webhook_configs_instance_idx ON webhook_configs (instance_id, id);

CREATE TABLE session_data (
    id            BLOB    PRIMARY KEY NOT NULL,
    instance_id   BLOB    NOT NULL UNIQUE REFERENCES instances (id) ON DELETE CASCADE,
    auth_state    BLOB    NOT NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    session_valid INTEGER NOT NULL DEFAULT 1 CHECK (session_valid IN (0, 1)),
    last_backup   TEXT
) STRICT;

CREATE TABLE usage_records (
    id              BLOB    PRIMARY KEY NOT NULL,
    subscription_id BLOB    NOT NULL REFERENCES subscriptions (id) ON DELETE RESTRICT,
    instance_id     BLOB    REFERENCES instances (id) ON DELETE RESTRICT,
    record_type     TEXT    NOT NULL CHECK (record_type IN
                        ('messages_sent', 'messages_received', 'api_calls', 'media_bytes', 'plugin_invocations',
                         'webhook_deliveries')),
    count           INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
    period          TEXT    NOT NULL CHECK (period GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    record_date     TEXT    NOT NULL,
    metadata        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata))
) STRICT;
-- SQLite treats NULLs as distinct in UNIQUE; two partial indexes give the key PostgreSQL's NULLS NOT DISTINCT.
CREATE UNIQUE INDEX usage_records_period_key ON usage_records (subscription_id, instance_id, record_type, period)
    WHERE instance_id IS NOT NULL;
CREATE UNIQUE INDEX usage_records_unattributed_period_key ON usage_records (subscription_id, record_type, period)
    WHERE instance_id IS NULL;
CREATE INDEX usage_records_instance_idx ON usage_records (instance_id, period);

CREATE TABLE audit_log (
    id              BLOB PRIMARY KEY NOT NULL,
    subscription_id BLOB,
    action          TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    resource        TEXT NOT NULL CHECK (length(resource) BETWEEN 1 AND 100),
    resource_id     TEXT,
    user_id         BLOB,
    api_key_id      BLOB,
    ip_address      TEXT,
    timestamp       TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_subscription_idx ON audit_log (subscription_id, id DESC);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, id DESC);
CREATE INDEX audit_log_timestamp_idx ON audit_log (timestamp);
