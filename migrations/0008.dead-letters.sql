-- depends: 0007.api-keys
-- Dead letters: messages a consumer read from Kafka and set aside instead of acting on
-- them (malformed, of an unknown type, or naming a payout the event store does not
-- have as told), each with the reason, recorded in the transaction that stores the
-- consumer's offsets. The chain worker's intake writes here; the projector keeps its
-- own in the read-model database (MongoDB collection dead_letters).

CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    topic text NOT NULL,
    topic_id text NOT NULL,  -- the topic's incarnation: a recreated topic starts its offsets again
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    reason text NOT NULL,  -- a stable code: missing_header, bad_header, unknown_type, bad_json, bad_data, not_in_store, differs_from_store
    detail text NOT NULL,
    headers jsonb NOT NULL,  -- [name, value] pairs as they came, bounded
    value bytea,  -- the first 64 KiB of the message's value
    value_size integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, topic, topic_id, partition, "offset")
);

-- A payout the chain worker would not sign for (the event store does not have it as
-- taken in, or it is no longer waiting to be paid) ends in state 'refused', never
-- retried; like confirmed and failed, it is not open.
DROP INDEX chain_payouts_open_idx;
CREATE INDEX chain_payouts_open_idx ON chain_payouts (state, created_at)
    WHERE state NOT IN ('confirmed', 'failed', 'refused');
