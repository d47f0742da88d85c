-- Tenants' WebAssembly plugins (issue 6): named plugins per subscription, their uploaded versions, the component
-- bytes (shared by content hash, so identical uploads are stored once), bindings of a plugin to an instance, the
-- bounded log each binding keeps, and each plugin's private key-value store per instance.

CREATE TABLE plugin_components (
    sha256     text        PRIMARY KEY CHECK (length(sha256) = 64),
    bytes      bytea       NOT NULL,
    size_bytes bigint      NOT NULL CHECK (size_bytes >= 0),
    created_at timestamptz NOT NULL
);

-- `active_version_id` has no foreign key: the row would reference its own children, and a plugin's versions are
-- only ever deleted with the plugin. The store sets it only to one of the plugin's versions.
CREATE TABLE plugins (
    id                uuid        PRIMARY KEY,
    subscription_id   uuid        NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    name              text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description       text,
    active_version_id uuid,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    CONSTRAINT plugins_subscription_name_key UNIQUE (subscription_id, name)
);
CREATE INDEX plugins_subscription_idx ON plugins (subscription_id, id);

CREATE TABLE plugin_versions (
    id          uuid        PRIMARY KEY,
    plugin_id   uuid        NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    version     integer     NOT NULL CHECK (version >= 1),
    sha256      text        NOT NULL REFERENCES plugin_components (sha256) ON DELETE RESTRICT,
    size_bytes  bigint      NOT NULL CHECK (size_bytes >= 0),
    uploaded_by uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL,
    CONSTRAINT plugin_versions_plugin_version_key UNIQUE (plugin_id, version)
);
CREATE INDEX plugin_versions_sha256_idx ON plugin_versions (sha256);

-- A NULL `version_id` follows the plugin's active version; a set one pins the binding to that version.
CREATE TABLE plugin_bindings (
    id              uuid        PRIMARY KEY,
    instance_id     uuid        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    plugin_id       uuid        NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    version_id      uuid        REFERENCES plugin_versions (id) ON DELETE CASCADE,
    position        integer     NOT NULL,
    direction       text        NOT NULL CHECK (direction IN ('inbound', 'outbound', 'both')),
    config          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    enabled         boolean     NOT NULL DEFAULT true,
    failure_policy  text        NOT NULL CHECK (failure_policy IN ('fail_open', 'fail_closed')),
    error_count     bigint      NOT NULL DEFAULT 0 CHECK (error_count >= 0),
    last_error      text,
    last_error_kind text,
    last_error_at   timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT plugin_bindings_instance_plugin_key UNIQUE (instance_id, plugin_id)
);
CREATE INDEX plugin_bindings_instance_idx ON plugin_bindings (instance_id, position, id);
CREATE INDEX plugin_bindings_plugin_idx ON plugin_bindings (plugin_id);

-- Bounded: appending trims each binding to its newest lines (the store's `keep`).
CREATE TABLE plugin_logs (
    id         uuid        PRIMARY KEY,
    binding_id uuid        NOT NULL REFERENCES plugin_bindings (id) ON DELETE CASCADE,
    level      text        NOT NULL CHECK (level IN ('trace', 'debug', 'info', 'warn', 'error')),
    message    text        NOT NULL,
    at         timestamptz NOT NULL
);
CREATE INDEX plugin_logs_binding_idx ON plugin_logs (binding_id, id);

CREATE TABLE plugin_kv (
    plugin_id   uuid        NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    instance_id uuid        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    key         text        NOT NULL,
    value       bytea       NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT plugin_kv_pkey PRIMARY KEY (plugin_id, instance_id, key)
);
