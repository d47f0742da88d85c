-- Cluster ownership (issue 14). Each instance's session runs on one node at a time, decided by a lease on the
-- instance row: the owning node, a fencing epoch that only grows, and an expiry. Lease and heartbeat times are
-- milliseconds since the Unix epoch on the DATABASE's clock (`db_clock`), never a node's. SQLite serves one node
-- (the gateway refuses a second process on the same file), but runs the same leases, so both backends share code
-- and tests.
CREATE TABLE nodes (
    id           BLOB    PRIMARY KEY NOT NULL,
    address      TEXT    NOT NULL,
    capacity     INTEGER NOT NULL CHECK (capacity > 0),
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) STRICT;

ALTER TABLE instances ADD COLUMN owner_node BLOB;
ALTER TABLE instances ADD COLUMN owner_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN lease_expires_at INTEGER;
CREATE INDEX instances_owner_idx ON instances (owner_node);

-- The database's clock in milliseconds ('now' is the same for every use within one statement).
CREATE VIEW db_clock AS SELECT CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) AS now_ms;

-- Commands for an instance whose session runs on another node (connect, restart, logout, pairing code): the node
-- that received the request writes one and wakes the owner, which executes it and records the outcome.
CREATE TABLE instance_commands (
    id          BLOB    PRIMARY KEY NOT NULL,
    instance_id BLOB    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL CHECK (kind IN ('connect', 'restart', 'logout', 'pair_code')),
    argument    TEXT,
    status      TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    result      TEXT,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX instance_commands_pending_idx ON instance_commands (instance_id) WHERE status = 'pending';
