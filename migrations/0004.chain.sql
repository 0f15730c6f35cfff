-- depends: 0003.transfer-timeouts
-- The chain worker's own state: payouts it took in, every envelope it signed (stored
-- before it is submitted), the channel accounts it submits from, and its cursors.

CREATE TABLE chain_payouts (
    payout_id text PRIMARY KEY,
    account text NOT NULL,
    asset text NOT NULL,
    stroops numeric NOT NULL CHECK (stroops > 0),
    destination text NOT NULL,
    memo text,
    -- new: taken in; bound: a channel and sequence number are chosen; submitting: an
    -- envelope is stored; applied / rejected: the chain's answer is known; confirmed /
    -- failed: the ledger was told (the end).
    state text NOT NULL DEFAULT 'new',
    channel text,
    sequence bigint,
    attempts integer NOT NULL DEFAULT 0,
    tx_hash text,
    ledger bigint,
    reason text,
    stuck boolean NOT NULL DEFAULT false,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX chain_payouts_open_idx ON chain_payouts (state, created_at) WHERE state NOT IN ('confirmed', 'failed');

CREATE TABLE chain_envelopes (
    tx_hash text PRIMARY KEY,
    payout_id text NOT NULL REFERENCES chain_payouts (payout_id),
    version integer NOT NULL,
    channel text NOT NULL,
    sequence bigint NOT NULL,
    max_ledger bigint NOT NULL,
    max_time bigint NOT NULL,
    envelope_xdr text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payout_id, version)
);

CREATE TABLE chain_cursors (
    name text PRIMARY KEY,
    value text NOT NULL
);
