-- Who may use the API: users, their API tokens and console sessions (issue 7).
-- In the registry database: identities must outlive any one ledger database, like the
-- protocol-number sequence and the key vault. Secrets are stored as scrypt hashes only.
CREATE TABLE api_users (
    user_name     text PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('analyst', 'supervisor', 'compliance', 'regulator', 'service', 'customer')),
    password_hash text,                -- scrypt$n$r$p$salt$hash; null: token-only user
    subject_ref   text,                -- customer users: their CPF's blind index
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    CHECK ((role = 'customer') = (subject_ref IS NOT NULL))
);

-- API tokens (kind 'token') and console sessions (kind 'session'): an id in clear, the
-- secret hashed; revocable and expiring. A session also holds its CSRF token's hash.
CREATE TABLE api_credentials (
    credential_id text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('token', 'session')),
    user_name     text NOT NULL REFERENCES api_users (user_name),
    secret_hash   text NOT NULL,
    csrf_hash     text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX api_credentials_user ON api_credentials (user_name);
