-- depends: 0002.relay-state
-- Pending transfers that expire, written by the event store's recorder in the same
-- transaction as the events that create or resolve them; the expirer reads it.

CREATE TABLE transfer_timeouts (
    transfer_id text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE INDEX transfer_timeouts_expires_at_idx ON transfer_timeouts (expires_at);
