-- Accounts: per-subscription limit overrides and rotating refresh tokens.

ALTER TABLE subscriptions ADD COLUMN limit_overrides TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(limit_overrides) AND json_type(limit_overrides) = 'object');

CREATE TABLE refresh_tokens (
    id         BLOB PRIMARY KEY NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  BLOB NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    issued_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT,
    revoked_at TEXT
) STRICT;
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
