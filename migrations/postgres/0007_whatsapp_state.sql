-- State of the whatsapp driver (Signal sessions, pre-keys, app-state keys, LID mappings, ...), one record per
-- (instance, kind, key). `value` is ciphertext: the driver encrypts with the instance id, kind and key as associated
-- data, so a row moved to another key or instance fails to decrypt. `stamp` is a unix time the driver chooses, so
-- expired records can be swept without decrypting them.
CREATE TABLE whatsapp_state (
    instance_id uuid        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind        text        NOT NULL,
    key         text        NOT NULL,
    value       bytea       NOT NULL,
    stamp       bigint      NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT whatsapp_state_pkey PRIMARY KEY (instance_id, kind, key)
);
CREATE INDEX whatsapp_state_stamp_idx ON whatsapp_state (instance_id, kind, stamp);
