"""The plain-SQL reference of the write benchmarks (benchmarks/sql_baseline.sql) is a
correct ledger, and pgbench drives it as the benchmarks do.

A ratio to a reference that cuts corners would flatter nobody, so the reference is held
to the ledger's rules: money moves exactly, an overdraft is refused, an id is used once
(a replay answers without moving money, another body is refused), a refusal writes
nothing, and concurrent transfers neither deadlock nor lose money. Each test gets its
own database in the test PostgreSQL, so nothing collides with the event store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.conftest import Urls, benchmark_module, unique

sql_reference = benchmark_module("sql_reference")


@pytest.fixture
def reference_db(servers: Urls) -> Iterator[str]:
    """A new database on the test server, dropped afterwards."""
    name = unique("sqlref").replace("-", "_")
    base = servers.database_url.rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def balances(conn: psycopg.Connection[Any]) -> dict[int, int]:
    return {int(a): int(b) for a, b in conn.execute("SELECT account_id, balance FROM balances")}


def written(conn: psycopg.Connection[Any]) -> tuple[int, int, dict[int, int]]:
    """Everything a transfer writes: transfer rows, entry rows, balances."""
    transfers = conn.execute("SELECT count(*) FROM transfers").fetchone()
    entries = conn.execute("SELECT count(*) FROM entries").fetchone()
    assert transfers is not None and entries is not None
    return int(transfers[0]), int(entries[0]), balances(conn)


def transfer(conn: psycopg.Connection[Any], id: str, debit: int, credit: int, amount: int) -> str:
    row = conn.execute("SELECT transfer(%s, %s, %s, %s)", (id, debit, credit, amount)).fetchone()
    assert row is not None
    return str(row[0])


def test_a_transfer_moves_money_exactly_with_one_entry_per_side(reference_db: str) -> None:
    sql_reference.load_baseline(reference_db, accounts=3, funds=1_000)
    with psycopg.connect(reference_db, autocommit=True) as conn:
        assert balances(conn) == {0: -3_000, 1: 1_000, 2: 1_000, 3: 1_000}
        assert transfer(conn, "t1", 1, 2, 300) == "posted"
        assert transfer(conn, "t2", 3, 1, 1) == "posted"
        assert balances(conn) == {0: -3_000, 1: 701, 2: 1_300, 3: 999}
        entries = conn.execute(
            "SELECT account_id, amount, balance_after FROM entries WHERE transfer_id = 't1' ORDER BY amount"
        ).fetchall()
        assert entries == [(1, -300, 700), (2, 300, 1_300)]
        # double entry: every transfer's entries sum to zero, and so do all balances
        assert conn.execute("SELECT count(*) FROM (SELECT 1 FROM entries GROUP BY transfer_id HAVING sum(amount) <> 0) x").fetchone() == (0,)  # fmt: skip
        assert sum(balances(conn).values()) == 0


def test_an_overdraft_is_refused_and_writes_nothing_up_to_the_limit(reference_db: str) -> None:
    sql_reference.load_baseline(reference_db, accounts=2, funds=500)
    with psycopg.connect(reference_db, autocommit=True) as conn:
        before = written(conn)
        with pytest.raises(errors.RaiseException, match="insufficient_funds"):
            transfer(conn, "too-much", 1, 2, 501)
        assert written(conn) == before
        conn.execute("UPDATE balances SET overdraft_limit = 1 WHERE account_id = 1")
        assert transfer(conn, "too-much", 1, 2, 501) == "posted"  # a refused id is free to use
        assert balances(conn)[1] == -1
        with pytest.raises(errors.RaiseException, match="insufficient_funds"):
            transfer(conn, "one-more", 1, 2, 1)


def test_an_id_is_used_once(reference_db: str) -> None:
    sql_reference.load_baseline(reference_db, accounts=2, funds=500)
    with psycopg.connect(reference_db, autocommit=True) as conn:
        assert transfer(conn, "once", 1, 2, 100) == "posted"
        after_first = written(conn)
        # the same body again: the first answer, nothing moves (even though 1 could pay it)
        assert transfer(conn, "once", 1, 2, 100) == "duplicate"
        assert written(conn) == after_first
        # the same id with another body: refused, nothing written
        for debit, credit, amount in ((1, 2, 101), (2, 1, 100)):
            with pytest.raises(errors.UniqueViolation, match="id_conflict"):
                transfer(conn, "once", debit, credit, amount)
            assert written(conn) == after_first


def test_invalid_transfers_are_refused_and_write_nothing(reference_db: str) -> None:
    sql_reference.load_baseline(reference_db, accounts=2, funds=500)
    with psycopg.connect(reference_db, autocommit=True) as conn:
        before = written(conn)
        for debit, credit, amount, error, message in (
            (1, 99, 1, errors.NoDataFound, "account_not_found"),
            (99, 1, 1, errors.NoDataFound, "account_not_found"),
            (1, 1, 1, errors.InvalidParameterValue, "same_account"),
            (1, 2, 0, errors.InvalidParameterValue, "invalid_amount"),
            (1, 2, -5, errors.InvalidParameterValue, "invalid_amount"),
        ):
            with pytest.raises(error, match=message):
                transfer(conn, unique("bad"), debit, credit, amount)
        assert written(conn) == before


def test_pgbench_drives_it_concurrently_without_deadlock_or_lost_money(reference_db: str) -> None:
    """Both scripts the benchmarks run, 4 clients for a second each on 3 accounts (every
    pair contended both ways: a lock taken out of order would deadlock and abort a
    client); then the books still balance and pgbench's summary parses."""
    sql_reference.load_baseline(reference_db, accounts=3, funds=10**12)
    uniform = sql_reference.run_pgbench(reference_db, clients=4, seconds=1, accounts=3)
    hot = sql_reference.run_pgbench(reference_db, clients=4, seconds=1, accounts=3, hot=True, rate=200)
    for result in (uniform, hot):
        assert result.clients == 4 and result.failed == 0 and result.duration_s == 1
        assert result.transactions > 0 and result.tps > 0 and result.latency_ms > 0
    with psycopg.connect(reference_db) as conn:
        transfers, entries, books = written(conn)
        assert transfers == 3 + uniform.transactions + hot.transactions  # 3 fundings
        assert entries == 2 * transfers
        assert sum(books.values()) == 0
        assert books[1] < 10**12  # the hot script pays from account 1 only
        by_entries = dict(conn.execute("SELECT account_id, sum(amount) FROM entries GROUP BY account_id").fetchall())
        assert {int(k): int(v) for k, v in by_entries.items()} == books


def test_the_pgbench_summary_parser() -> None:
    output = """pgbench (18.6)
transaction type: /tmp/sqlref-script-x/uniform.sql
scaling factor: 1
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 20 s
number of transactions actually processed: 29720
number of failed transactions: 0 (0.000%)
latency average = 5.383 ms
initial connection time = 21.905 ms
tps = 1486.183316 (without initial connection time)
"""
    result = sql_reference.parse_pgbench(output)
    assert result == sql_reference.PgbenchResult(8, 29720, 0, 1486.183316, 5.383, 20.0)
    with pytest.raises(ValueError, match="lacks"):
        sql_reference.parse_pgbench("pgbench: error: connection to server failed\n")


def test_the_reference_uses_the_embedded_binaries() -> None:
    pgbench = sql_reference.pgbench_path()
    assert pgbench.exists() and (pgbench.parent / "postgres").exists()
