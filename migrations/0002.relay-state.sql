-- depends: 0001.event-store
-- Where the relay has got to in the notification log: a position is stored only after
-- the broker confirmed every event up to it. topic_id tells a broker that lost its
-- memory (a recreated topic) from the one the position was recorded against.

CREATE TABLE relay_state (
    topic text PRIMARY KEY,
    position bigint NOT NULL,
    topic_id text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
