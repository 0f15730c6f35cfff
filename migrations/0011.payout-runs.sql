-- depends: 0010.group-write
-- Payout runs the chain worker drives: which it knows of (from Kafka, a hint each), the
-- state the event store last gave (a paused run's payouts are not bound), and how far
-- it has requested the payouts of the current attempt.

CREATE TABLE chain_runs (
    run_id text PRIMARY KEY,
    state text NOT NULL DEFAULT 'unknown',
    attempt integer NOT NULL DEFAULT 0,
    next_chunk integer NOT NULL DEFAULT 0,
    requested integer NOT NULL DEFAULT 0,
    ended boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE ON chain_runs TO ledger_writer;
