-- depends: 0009.roles
-- One statement writes a whole group of commands (commands.group_commit): it takes the
-- table lock, checks the streams the group only read (fee rules) are still at the
-- versions it read, appends the events (ledger_append: numbered, hash-chained), keeps
-- the pending transfers' timeouts in step, and wakes the relay. Run in autocommit, it is
-- its own transaction: one round trip and one fsync per group, all or nothing. The
-- events come as four plain arrays (cheaper for the client to send than composites).
--
-- A stream that moved is reported as a unique violation (SQLSTATE 23505), as a
-- concurrent append of the same version would be: the writer runs the group again on
-- fresh state either way.

CREATE FUNCTION ledger_write(
    streams uuid[],
    versions bigint[],
    topics text[],
    states bytea[],
    read_streams uuid[],
    read_versions bigint[],
    timeouts_set_ids text[],
    timeouts_set_at timestamptz[],
    timeouts_cleared text[]
) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    moved uuid;
BEGIN
    PERFORM set_config('lock_timeout', '10s', true);
    LOCK TABLE ledger_events IN EXCLUSIVE MODE;
    SELECT k.stream INTO moved
    FROM unnest(read_streams, read_versions) AS k(stream, version)
    WHERE coalesce((SELECT max(originator_version) FROM ledger_events WHERE originator_id = k.stream), 0)
          <> k.version
    LIMIT 1;
    IF moved IS NOT NULL THEN
        RAISE EXCEPTION 'stream % moved while the command ran', moved USING ERRCODE = 'unique_violation';
    END IF;
    RETURN QUERY SELECT ledger_append(ARRAY(
        SELECT ROW(e.stream, e.version, e.topic, e.state)::stored_event_uuid
        FROM unnest(streams, versions, topics, states) WITH ORDINALITY AS e(stream, version, topic, state, n)
        ORDER BY e.n
    ));
    INSERT INTO transfer_timeouts (transfer_id, expires_at)
    SELECT * FROM unnest(timeouts_set_ids, timeouts_set_at);
    DELETE FROM transfer_timeouts WHERE transfer_id = ANY(timeouts_cleared);
    PERFORM pg_notify('ledger_events', '');
END $$;

REVOKE ALL ON FUNCTION ledger_write(uuid[], bigint[], text[], bytea[], uuid[], bigint[], text[], timestamptz[], text[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_write(uuid[], bigint[], text[], bytea[], uuid[], bigint[], text[], timestamptz[], text[])
    TO ledger_writer;
