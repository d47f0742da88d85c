-- Messages in both directions: the durable outbox (outbound, status 'queued' until sent) and the inbound log that
-- makes WhatsApp's redeliveries idempotent. Media bytes of a queued message live in the row so a restart can still
-- send it; they are cleared once the message has left.
CREATE TABLE messages (
    id                uuid        PRIMARY KEY,
    instance_id       uuid        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    direction         text        NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    chat_jid          text        NOT NULL CHECK (length(chat_jid) BETWEEN 3 AND 320),
    sender_jid        text,
    wa_message_id     text,
    kind              text        NOT NULL,
    content           jsonb       NOT NULL DEFAULT '{}',
    text              text,
    quoted_message_id text,
    media             bytea,
    status            text        NOT NULL CHECK (status IN
                          ('queued', 'sent', 'delivered', 'read', 'failed', 'received', 'dropped')),
    failure_reason    text,
    idempotency_key   text,
    request_hash      bytea,
    origin            text        NOT NULL,
    processed         boolean     NOT NULL DEFAULT FALSE,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    sent_at           timestamptz,
    delivered_at      timestamptz,
    read_at           timestamptz
);
CREATE UNIQUE INDEX messages_idempotency_key ON messages (instance_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX messages_wa_id_key ON messages (instance_id, direction, wa_message_id)
    WHERE wa_message_id IS NOT NULL;
CREATE INDEX messages_outbox_idx ON messages (instance_id, id) WHERE status = 'queued';
CREATE INDEX messages_chat_idx ON messages (instance_id, chat_jid, id);

-- WhatsApp addresses many users by a LID instead of their phone number; one contact row per person keeps both.
ALTER TABLE contacts ADD COLUMN lid text;
CREATE UNIQUE INDEX contacts_instance_lid_key ON contacts (instance_id, lid) WHERE lid IS NOT NULL;
