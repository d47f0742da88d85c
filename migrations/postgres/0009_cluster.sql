-- Cluster ownership (issue 14). Each instance's session runs on one node at a time, decided by a lease on the
-- instance row: the owning node, a fencing epoch that only grows, and an expiry. Lease and heartbeat times are
-- milliseconds since the Unix epoch on the DATABASE's clock (`db_clock`), never a node's, so nodes with skewed
-- clocks still agree on who holds what. The same SQL serves both backends; only `db_clock` differs.
CREATE TABLE nodes (
    id           uuid    PRIMARY KEY,
    address      text    NOT NULL,
    capacity     integer NOT NULL CHECK (capacity > 0),
    started_at   bigint  NOT NULL,
    heartbeat_at bigint  NOT NULL
);

-- No foreign key to nodes: a lease outlives a crashed node's row until it expires, and the epoch must survive
-- releases (the next owner raises it).
ALTER TABLE instances ADD COLUMN owner_node uuid;
ALTER TABLE instances ADD COLUMN owner_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN lease_expires_at bigint;
CREATE INDEX instances_owner_idx ON instances (owner_node);

-- The database's clock in milliseconds, stable within one statement.
CREATE VIEW db_clock AS SELECT (extract(epoch FROM statement_timestamp()) * 1000)::bigint AS now_ms;

-- Commands for an instance whose session runs on another node (connect, restart, logout, pairing code): the node
-- that received the request writes one and wakes the owner, which executes it and records the outcome.
CREATE TABLE instance_commands (
    id          uuid    PRIMARY KEY,
    instance_id uuid    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind        text    NOT NULL CHECK (kind IN ('connect', 'restart', 'logout', 'pair_code')),
    argument    text,
    status      text    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    result      text,
    created_at  bigint  NOT NULL
);
CREATE INDEX instance_commands_pending_idx ON instance_commands (instance_id) WHERE status = 'pending';
