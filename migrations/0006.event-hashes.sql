-- depends: 0005.chain-channel-exclusive
-- Tamper evidence: every stored event carries a hash chained to the previous event of
-- its own stream, and the position of the first event of the write (the one save, one
-- transaction) it belongs to, so that where writes begin and end is part of what is
-- hashed (docs/audit.md has the exact definition, for auditors' own tools):
--
--   hash(v) = sha256(hash(v-1) || int8 position || uuid stream || int8 version
--                    || int8 write_position || utf8 topic || 0x00 || state),   hash(0) = empty
--
-- The chain is per stream, so writers of different streams share nothing but the
-- table lock every insert already takes. ledger_append() is the ledger's only writer:
-- it numbers each event (a version of 0 means "append at the end", for system
-- accounts), chains it, and inserts it, all in the caller's transaction. It is not
-- granted to PUBLIC: whoever may call it writes events with hashes that fit.

ALTER TABLE ledger_events ADD COLUMN hash bytea, ADD COLUMN write_position bigint;

-- Chain the events already stored (a store older than this migration), each write
-- being the events one transaction inserted.
DO $$
DECLARE
    r record;
    previous bytea := ''::bytea;
    stream uuid;
BEGIN
    FOR r IN SELECT notification_id, originator_id, originator_version, topic, state,
                    min(notification_id) OVER (PARTITION BY xmin::text) AS write_position
             FROM ledger_events ORDER BY originator_id, originator_version LOOP
        IF stream IS DISTINCT FROM r.originator_id THEN
            previous := ''::bytea;
            stream := r.originator_id;
        END IF;
        previous := sha256(previous || int8send(r.notification_id) || uuid_send(r.originator_id)
                           || int8send(r.originator_version) || int8send(r.write_position)
                           || convert_to(r.topic, 'UTF8') || '\x00'::bytea || r.state);
        UPDATE ledger_events SET hash = previous, write_position = r.write_position
        WHERE notification_id = r.notification_id;
    END LOOP;
END $$;

ALTER TABLE ledger_events ALTER COLUMN hash SET NOT NULL, ALTER COLUMN write_position SET NOT NULL;

CREATE FUNCTION ledger_append(events stored_event_uuid[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    e stored_event_uuid;
    at_version bigint;
    previous bytea;
    at_position bigint;
    write_at bigint;
    positions text := pg_get_serial_sequence('ledger_events', 'notification_id');
BEGIN
    FOREACH e IN ARRAY events LOOP
        IF e.originator_version > 0 THEN
            at_version := e.originator_version;
            SELECT hash INTO previous FROM ledger_events
            WHERE originator_id = e.originator_id AND originator_version = at_version - 1;
            IF at_version > 1 AND previous IS NULL THEN
                RAISE EXCEPTION 'stream % has no version % to follow', e.originator_id, at_version - 1;
            END IF;
        ELSE
            SELECT originator_version, hash INTO at_version, previous FROM ledger_events
            WHERE originator_id = e.originator_id ORDER BY originator_version DESC LIMIT 1;
            at_version := coalesce(at_version, 0) + 1;
        END IF;
        at_position := nextval(positions);
        write_at := coalesce(write_at, at_position);
        INSERT INTO ledger_events
            (originator_id, originator_version, topic, state, notification_id, write_position, hash)
        VALUES (e.originator_id, at_version, e.topic, e.state, at_position, write_at,
                sha256(coalesce(previous, ''::bytea) || int8send(at_position) || uuid_send(e.originator_id)
                       || int8send(at_version) || int8send(write_at) || convert_to(e.topic, 'UTF8')
                       || '\x00'::bytea || e.state));
        RETURN NEXT at_position;
    END LOOP;
END $$;

REVOKE ALL ON FUNCTION ledger_append(stored_event_uuid[]) FROM PUBLIC;
