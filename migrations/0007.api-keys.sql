-- depends: 0006.event-hashes
-- API keys and the nonces of signed requests (docs: README "Keys").
--
-- A key's secret is random (64 bytes), so it is stored as its SHA-256 alone: a slow
-- password hash would buy nothing against a random secret and cost every request.
-- Secrets are longer than SHA-256's 64-byte block, so HMAC-SHA256(secret, m) equals
-- HMAC-SHA256(sha256(secret), m) by HMAC's own definition: the stored hash is enough
-- to check signed requests, and the secret itself is never stored anywhere.

CREATE TABLE api_keys (
    key_id text PRIMARY KEY,
    name text NOT NULL,
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    scopes text[] NOT NULL CHECK (cardinality(scopes) > 0),
    -- account-id patterns the key is limited to ('shop-42:*'); empty: every account
    accounts text[] NOT NULL DEFAULT '{}',
    -- a limited key may credit any account unless this is set
    credits_within_accounts boolean NOT NULL DEFAULT false,
    signed_only boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- A nonce is remembered until its request's timestamp is out of the accepted window,
-- by every API process alike (the primary key is the check).
CREATE TABLE api_nonces (
    key_id text NOT NULL,
    nonce text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (key_id, nonce)
);

CREATE INDEX api_nonces_expires_at_idx ON api_nonces (expires_at);
