-- Tenants' WebAssembly plugins (issue 6): named plugins per subscription, their uploaded versions, the component
-- bytes (shared by content hash, so identical uploads are stored once), bindings of a plugin to an instance, the
-- bounded log each binding keeps, and each plugin's private key-value store per instance.

CREATE TABLE plugin_components (
    sha256     TEXT    PRIMARY KEY NOT NULL CHECK (length(sha256) = 64),
    bytes      BLOB    NOT NULL,
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
    created_at TEXT    NOT NULL
) STRICT;

-- `active_version_id` has no foreign key: the row would reference its own children, and a plugin's versions are
-- only ever deleted with the plugin. The store sets it only to one of the plugin's versions.
CREATE TABLE plugins (
    id                BLOB    PRIMARY KEY NOT NULL,
    subscription_id   BLOB    NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    name              TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description       TEXT,
    active_version_id BLOB,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    CONSTRAINT plugins_subscription_name_key UNIQUE (subscription_id, name)
) STRICT;
CREATE INDEX plugins_subscription_idx ON plugins (subscription_id, id);

CREATE TABLE plugin_versions (
    id          BLOB    PRIMARY KEY NOT NULL,
    plugin_id   BLOB    NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version >= 1),
    sha256      TEXT    NOT NULL REFERENCES plugin_components (sha256) ON DELETE RESTRICT,
    size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
    uploaded_by BLOB    REFERENCES users (id) ON DELETE SET NULL,
    created_at  TEXT    NOT NULL,
    CONSTRAINT plugin_versions_plugin_version_key UNIQUE (plugin_id, version)
) STRICT;
CREATE INDEX plugin_versions_sha256_idx ON plugin_versions (sha256);

-- A NULL `version_id` follows the plugin's active version; a set one pins the binding to that version.
CREATE TABLE plugin_bindings (
    id              BLOB    PRIMARY KEY NOT NULL,
    instance_id     BLOB    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    plugin_id       BLOB    NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    version_id      BLOB    REFERENCES plugin_versions (id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    direction       TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound', 'both')),
    config          TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(config)),
    enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    failure_policy  TEXT    NOT NULL CHECK (failure_policy IN ('fail_open', 'fail_closed')),
    error_count     INTEGER NOT NULL DEFAULT 0 CHECK (error_count >= 0),
    last_error      TEXT,
    last_error_kind TEXT,
    last_error_at   TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    CONSTRAINT plugin_bindings_instance_plugin_key UNIQUE (instance_id, plugin_id)
) STRICT;
CREATE INDEX plugin_bindings_instance_idx ON plugin_bindings (instance_id, position, id);
CREATE INDEX plugin_bindings_plugin_idx ON plugin_bindings (plugin_id);

-- Bounded: appending trims each binding to its newest lines (the store's `keep`).
CREATE TABLE plugin_logs (
    id         BLOB    PRIMARY KEY NOT NULL,
    binding_id BLOB    NOT NULL REFERENCES plugin_bindings (id) ON DELETE CASCADE,
    level      TEXT    NOT NULL CHECK (level IN ('trace', 'debug', 'info', 'warn', 'error')),
    message    TEXT    NOT NULL,
    at         TEXT    NOT NULL
) STRICT;
CREATE INDEX plugin_logs_binding_idx ON plugin_logs (binding_id, id);

CREATE TABLE plugin_kv (
    plugin_id   BLOB    NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    instance_id BLOB    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    key         TEXT    NOT NULL,
    value       BLOB    NOT NULL,
    updated_at  TEXT    NOT NULL,
    CONSTRAINT plugin_kv_pkey PRIMARY KEY (plugin_id, instance_id, key)
) STRICT;
