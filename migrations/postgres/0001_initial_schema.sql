-- The data model of shared/design/data-model.md, PostgreSQL flavour.
-- Ids are UUIDv7 (time-ordered), times are timestamptz (UTC), JSON is jsonb.
-- Constraint names are stable: the store maps unique-key names to typed conflicts.

CREATE TABLE subscriptions (
    id                uuid        PRIMARY KEY,
    name              text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    tier              text        NOT NULL CHECK (tier IN ('free', 'starter', 'pro', 'enterprise')),
    max_instances     integer     NOT NULL CHECK (max_instances >= 0),
    is_active         boolean     NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    current_instances integer     NOT NULL DEFAULT 0 CHECK (current_instances >= 0),
    monthly_messages  bigint      NOT NULL CHECK (monthly_messages >= 0),
    messages_used     bigint      NOT NULL DEFAULT 0 CHECK (messages_used >= 0),
    last_usage_reset  timestamptz NOT NULL
);

CREATE TABLE users (
    id              uuid        PRIMARY KEY,
    email           text        NOT NULL CONSTRAINT users_email_key UNIQUE CHECK (length(email) BETWEEN 3 AND 254),
    password        text        NOT NULL,
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role            text        NOT NULL CHECK (role IN ('admin', 'owner', 'member')),
    subscription_id uuid        REFERENCES subscriptions (id) ON DELETE RESTRICT,
    is_active       boolean     NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    last_login_at   timestamptz,
    -- Operators belong to no subscription; everyone else to exactly one.
    CONSTRAINT users_role_subscription_check CHECK ((role = 'admin') = (subscription_id IS NULL))
);
CREATE INDEX users_subscription_idx ON users (subscription_id, id);

CREATE TABLE instances (
    id                   uuid        PRIMARY KEY,
    name                 text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    subscription_id      uuid        NOT NULL REFERENCES subscriptions (id) ON DELETE RESTRICT,
    created_by_id        uuid        REFERENCES users (id) ON DELETE SET NULL,
    driver               text        NOT NULL CHECK (driver IN ('sandbox', 'whatsapp')),
    status               text        NOT NULL DEFAULT 'created' CHECK (status IN
                             ('created', 'connecting', 'qr', 'connected', 'disconnected', 'logged_out', 'replaced',
                              'banned', 'failed')),
    phone                text,
    display_name         text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    last_connected_at    timestamptz,
    last_disconnected_at timestamptz,
    settings             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    is_active            boolean     NOT NULL DEFAULT true,
    qr_code              text,
    qr_code_expiry       timestamptz,
    connection_attempts  integer     NOT NULL DEFAULT 0 CHECK (connection_attempts >= 0),
    last_error           text,
    last_error_at        timestamptz,
    CONSTRAINT instances_subscription_name_key UNIQUE (subscription_id, name)
);
CREATE INDEX instances_subscription_idx ON instances (subscription_id, id);
CREATE INDEX instances_created_by_idx ON instances (created_by_id);

CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    instance_id  uuid        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    key_hash     bytea       NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE,
    permissions  jsonb       NOT NULL DEFAULT '[]'::jsonb,
    is_active    boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    usage_count  bigint      NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
    rate_limit   integer     CHECK (rate_limit > 0)
);
CREATE INDEX api_keys_instance_idx ON api_keys (instance_id, id);

CREATE TABLE message_stats (
    id                uuid    PRIMARY KEY,
    instance_id       uuid    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    date              date    NOT NULL,
    messages_sent     bigint  NOT NULL DEFAULT 0 CHECK (messages_sent >= 0),
    messages_received bigint  NOT NULL DEFAULT 0 CHECK (messages_received >= 0),
    messages_failed   bigint  NOT NULL DEFAULT 0 CHECK (messages_failed >= 0),
    api_calls         bigint  NOT NULL DEFAULT 0 CHECK (api_calls >= 0),
    CONSTRAINT message_stats_instance_date_key UNIQUE (instance_id, date)
);

CREATE TABLE contacts (
    id                  uuid        PRIMARY KEY,
    instance_id         uuid        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    jid                 text        NOT NULL CHECK (length(jid) BETWEEN 3 AND 320),
    name                text,
    notify              text,
    is_blocked          boolean     NOT NULL DEFAULT false,
    is_group            boolean     NOT NULL DEFAULT false,
    group_admin         boolean     NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    last_message_at     timestamptz,
    profile_picture_url text,
    status              text,
    CONSTRAINT contacts_instance_jid_key UNIQUE (instance_id, jid)
);
CREATE INDEX contacts_instance_idx ON contacts (instance_id, id);

CREATE TABLE webhook_configs (
    id             uuid        PRIMARY KEY,
    instance_id    uuid        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    url            text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events         jsonb       NOT NULL DEFAULT '["*"]'::jsonb,
    secret         text        NOT NULL,
    is_active      boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    total_sent     bigint      NOT NULL DEFAULT 0 CHECK (total_sent >= 0),
    total_failed   bigint      NOT NULL DEFAULT 0 CHECK (total_failed >= 0),
    last_sent_at   timestamptz,
    last_failed_at timestamptz,
    last_error     text
);
CREATE INDEX webhook_configs_instance_idx ON webhook_configs (instance_id, id);

CREATE TABLE session_data (
    id            uuid        PRIMARY KEY,
    instance_id   uuid        NOT NULL CONSTRAINT session_data_instance_key UNIQUE
                              REFERENCES instances (id) ON DELETE CASCADE,
    auth_state    bytea       NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    session_valid boolean     NOT NULL DEFAULT true,
    last_backup   timestamptz
);

CREATE TABLE usage_records (
    id              uuid        PRIMARY KEY,
    subscription_id uuid        NOT NULL REFERENCES subscriptions (id) ON DELETE RESTRICT,
    -- NULL: not attributed to an instance (or its instance was deleted and its usage folded in here).
    -- RESTRICT: the store folds an instance's usage into the NULL row before deleting the instance.
    instance_id     uuid        REFERENCES instances (id) ON DELETE RESTRICT,
    record_type     text        NOT NULL CHECK (record_type IN
                        ('messages_sent', 'messages_received', 'api_calls', 'media_bytes', 'plugin_invocations',
                         'webhook_deliveries')),
    count           bigint      NOT NULL DEFAULT 0 CHECK (count >= 0),
    period          text        NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    record_date     timestamptz NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb
);
-- Two partial unique indexes rather than NULLS NOT DISTINCT: SQLite has no such option, and identical keys let
-- both backends share one ON CONFLICT statement per case.
CREATE UNIQUE INDEX usage_records_period_key ON usage_records (subscription_id, instance_id, record_type, period)
    WHERE instance_id IS NOT NULL;
CREATE UNIQUE INDEX usage_records_unattributed_period_key ON usage_records (subscription_id, record_type, period)
    WHERE instance_id IS NULL;
CREATE INDEX usage_records_instance_idx ON usage_records (instance_id, period);

CREATE TABLE audit_log (
    id              uuid        PRIMARY KEY,
    -- No foreign keys: the log outlives what it talks about.
    subscription_id uuid,
    action          text        NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    resource        text        NOT NULL CHECK (length(resource) BETWEEN 1 AND 100),
    resource_id     text,
    user_id         uuid,
    api_key_id      uuid,
    ip_address      text,
    timestamp       timestamptz NOT NULL
);
CREATE INDEX audit_log_subscription_idx ON audit_log (subscription_id, id DESC);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, id DESC);
CREATE INDEX audit_log_timestamp_idx ON audit_log (timestamp);
