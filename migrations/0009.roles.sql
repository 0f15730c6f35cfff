-- depends: 0008.dead-letters
-- Three roles: the migration owner (whoever runs this: the tables' owner), the ledger's
-- writer, and a read-only role. `ledger db migrate --writer-password-file F
-- --reader-password-file F` (or `ledger up` on its embedded server) lets them log in.
--
-- The writer appends events only through ledger_append() and takes the table lock only
-- through ledger_lock_events(), both running as the owner (SECURITY DEFINER): it has no
-- INSERT, UPDATE, DELETE or TRUNCATE on ledger_events, so it cannot change history, only
-- add to it with hashes that fit. The reader reads; it may also record the nonces of
-- signed requests, which the query API needs.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_writer') THEN
        CREATE ROLE ledger_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        CREATE ROLE ledger_reader NOLOGIN;
    END IF;
END $$;

-- Inserts lock the table so that positions become visible in commit order (see
-- eventsourcing's PostgresApplicationRecorder); LOCK needs UPDATE or DELETE rights,
-- which the writer must not have.
CREATE FUNCTION ledger_lock_events() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    LOCK TABLE ledger_events IN EXCLUSIVE MODE;
END $$;
REVOKE ALL ON FUNCTION ledger_lock_events() FROM PUBLIC;

ALTER FUNCTION ledger_append(stored_event_uuid[]) SECURITY DEFINER SET search_path FROM CURRENT;

GRANT EXECUTE ON FUNCTION ledger_append(stored_event_uuid[]), ledger_lock_events() TO ledger_writer;
GRANT SELECT ON ledger_events TO ledger_writer;
GRANT SELECT, INSERT, DELETE ON transfer_timeouts TO ledger_writer;
GRANT SELECT, INSERT, UPDATE ON relay_state, chain_payouts, chain_cursors, api_keys TO ledger_writer;
GRANT SELECT, INSERT ON chain_envelopes TO ledger_writer;
GRANT SELECT, INSERT, DELETE ON api_nonces TO ledger_writer;
GRANT SELECT, INSERT ON dead_letters TO ledger_writer;
GRANT USAGE ON SEQUENCE dead_letters_id_seq TO ledger_writer;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO ledger_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO ledger_reader;
GRANT INSERT, DELETE ON api_nonces TO ledger_reader;
