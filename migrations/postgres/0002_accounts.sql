-- Accounts: per-subscription limit overrides and rotating refresh tokens.

ALTER TABLE subscriptions ADD COLUMN limit_overrides jsonb NOT NULL DEFAULT '{}'::jsonb
    CONSTRAINT subscriptions_limit_overrides_check CHECK (jsonb_typeof(limit_overrides) = 'object');

CREATE TABLE refresh_tokens (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Every token rotated from one sign-in shares a family; reuse of a consumed token revokes the family.
    family_id  uuid        NOT NULL,
    -- SHA-256 of the token; the token itself is shown to the client once and never stored.
    token_hash bytea       NOT NULL CONSTRAINT refresh_tokens_token_hash_key UNIQUE,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
