-- The plain-SQL reference of issue 12: a double-entry transfer as a PL/pgSQL function of
-- the usual kind, which the ledger's write path is measured against (benchmarks/write_ratio.py,
-- benchmarks/cpu_budget.py load it into a second PostgreSQL of the same binaries and settings
-- and drive it with pgbench).
--
-- It keeps the guarantees a ledger client relies on, so the comparison is fair: the two
-- balance rows are locked FOR UPDATE in id order (no deadlock between opposite transfers),
-- the overdraft limit is checked under that lock, the client's id is unique (same id and
-- same body: the first answer, nothing moves; other body: refused), one entry row per side,
-- and a refusal raises, so its transaction writes nothing. Amounts are bigint minor units
-- (the ledger goes to 2^127-1; the usual SQL ledger stops at 2^63-1).
--
-- Load it into an empty database (it creates plain tables in the current schema), then
-- SELECT open_funded_accounts(n, balance): accounts 1..n, each funded by a transfer from
-- account 0, the issuance account (it may go negative), so balances always sum to zero.

CREATE TABLE balances (
    account_id      bigint PRIMARY KEY,
    balance         bigint NOT NULL,
    overdraft_limit bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0)
);

CREATE TABLE transfers (
    id             text PRIMARY KEY,  -- the client's idempotency id
    debit_account  bigint NOT NULL REFERENCES balances,
    credit_account bigint NOT NULL REFERENCES balances,
    amount         bigint NOT NULL CHECK (amount > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE entries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- global order, newest last
    transfer_id   text   NOT NULL REFERENCES transfers,
    account_id    bigint NOT NULL REFERENCES balances,
    amount        bigint NOT NULL,  -- negative on the debited side, positive on the credited side
    balance_after bigint NOT NULL
);

-- An account's history, newest first, is what a ledger is asked for most.
CREATE INDEX entries_by_account ON entries (account_id, id);

-- Moves p_amount from p_debit to p_credit. Returns 'posted', or 'duplicate' when this id
-- was already applied with this very body (nothing moves again). Raises, writing nothing:
-- 22023 invalid_amount / same_account, P0002 account_not_found, 23505 id_conflict (the id
-- was used with another body), P0001 insufficient_funds.
CREATE FUNCTION transfer(p_id text, p_debit bigint, p_credit bigint, p_amount bigint)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_debit  balances;
    v_credit balances;
    v_prior  transfers;
BEGIN
    IF p_amount IS NULL OR p_amount <= 0 THEN
        RAISE EXCEPTION 'invalid_amount' USING ERRCODE = '22023';
    END IF;
    IF p_debit = p_credit THEN
        RAISE EXCEPTION 'same_account' USING ERRCODE = '22023';
    END IF;

    -- Lock both rows in id order: two transfers in opposite directions wait, never deadlock.
    IF p_debit < p_credit THEN
        SELECT * INTO v_debit FROM balances WHERE account_id = p_debit FOR UPDATE;
        SELECT * INTO v_credit FROM balances WHERE account_id = p_credit FOR UPDATE;
    ELSE
        SELECT * INTO v_credit FROM balances WHERE account_id = p_credit FOR UPDATE;
        SELECT * INTO v_debit FROM balances WHERE account_id = p_debit FOR UPDATE;
    END IF;
    IF v_debit.account_id IS NULL OR v_credit.account_id IS NULL THEN
        RAISE EXCEPTION 'account_not_found' USING ERRCODE = 'P0002';
    END IF;

    -- The id first: a retry of an applied transfer answers as the first attempt did,
    -- even if the balance has moved since (the ledger's idempotency, not a fresh check).
    INSERT INTO transfers (id, debit_account, credit_account, amount)
    VALUES (p_id, p_debit, p_credit, p_amount)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO v_prior FROM transfers WHERE id = p_id;
        IF (v_prior.debit_account, v_prior.credit_account, v_prior.amount) = (p_debit, p_credit, p_amount) THEN
            RETURN 'duplicate';
        END IF;
        RAISE EXCEPTION 'id_conflict' USING ERRCODE = '23505';
    END IF;

    IF v_debit.balance - p_amount < -v_debit.overdraft_limit THEN
        RAISE EXCEPTION 'insufficient_funds' USING ERRCODE = 'P0001';  -- rolls the insert back
    END IF;

    UPDATE balances SET balance = balance - p_amount WHERE account_id = p_debit;
    UPDATE balances SET balance = balance + p_amount WHERE account_id = p_credit;
    INSERT INTO entries (transfer_id, account_id, amount, balance_after)
    VALUES (p_id, p_debit, -p_amount, v_debit.balance - p_amount),
           (p_id, p_credit, p_amount, v_credit.balance + p_amount);
    RETURN 'posted';
END
$$;

-- Setup: accounts 1..p_count, each funded with p_balance from the issuance account 0
-- (whose overdraft limit is the largest bigint: it may go as negative as money goes).
CREATE FUNCTION open_funded_accounts(p_count integer, p_balance bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO balances (account_id, balance, overdraft_limit)
    VALUES (0, 0, 9223372036854775807)
    ON CONFLICT (account_id) DO NOTHING;
    INSERT INTO balances (account_id, balance)
    SELECT n, 0 FROM generate_series(1, p_count) AS n;
    PERFORM transfer('fund-' || n, 0, n, p_balance) FROM generate_series(1, p_count) AS n;
END
$$;
