-- Messages in both directions: the durable outbox (outbound, status 'queued' until sent) and the inbound log that
-- makes WhatsApp's redeliveries idempotent. Media bytes of a queued message live in the row so a restart can still
-- send it; they are cleared once the message has left.
CREATE TABLE messages (
    id                BLOB    PRIMARY KEY NOT NULL,
    instance_id       BLOB    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    direction         TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    chat_jid          TEXT    NOT NULL CHECK (length(chat_jid) BETWEEN 3 AND 320),
    sender_jid        TEXT,
    wa_message_id     TEXT,
    kind              TEXT    NOT NULL,
    content           TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(content)),
    text              TEXT,
    quoted_message_id TEXT,
    media             BLOB,
    status            TEXT    NOT NULL CHECK (status IN
                          ('queued', 'sent', 'delivered', 'read', 'failed', 'received', 'dropped')),
    failure_reason    TEXT,
    idempotency_key   TEXT,
    request_hash      BLOB,
    origin            TEXT    NOT NULL,
    processed         INTEGER NOT NULL DEFAULT 0 CHECK (processed IN (0, 1)),
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    sent_at           TEXT,
    delivered_at      TEXT,
    read_at           TEXT
) STRICT;
CREATE UNIQUE INDEX messages_idempotency_key ON messages (instance_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX messages_wa_id_key ON messages (instance_id, direction, wa_message_id)
    WHERE wa_message_id IS NOT NULL;
CREATE INDEX messages_outbox_idx ON messages (instance_id, id) WHERE status = 'queued';
CREATE INDEX messages_chat_idx ON messages (instance_id, chat_jid, id);

-- WhatsApp addresses many users by a LID instead of their phone number; one contact row per person keeps both.
ALTER TABLE contacts ADD COLUMN lid TEXT;
CREATE UNIQUE INDEX contacts_instance_lid_key ON contacts (instance_id, lid) WHERE lid IS NOT NULL;
