-- Number checks are forwarded to the owning node like the other commands (issue 20): the owner's session asks
-- WhatsApp, and its answer (JSON) is the command's result. SQLite cannot change a CHECK constraint in place: the
-- table is rebuilt (nothing references it; its old indexes go with the old table).
ALTER TABLE instance_commands RENAME TO instance_commands_old;
CREATE TABLE instance_commands (
    id          BLOB    PRIMARY KEY NOT NULL,
    instance_id BLOB    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL
        CHECK (kind IN ('connect', 'restart', 'logout', 'pair_code', 'mark_read', 'presence', 'block', 'check_numbers')),
    argument    TEXT,
    status      TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    result      TEXT,
    created_at  INTEGER NOT NULL
) STRICT;
INSERT INTO instance_commands (id, instance_id, kind, argument, status, result, created_at)
    SELECT id, instance_id, kind, argument, status, result, created_at FROM instance_commands_old;
DROP TABLE instance_commands_old;
CREATE INDEX instance_commands_pending_idx ON instance_commands (instance_id) WHERE status = 'pending';
CREATE INDEX instance_commands_created_idx ON instance_commands (created_at);
