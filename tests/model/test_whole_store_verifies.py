"""Whatever the ledger itself wrote verifies clean: no false findings.

This runs over the whole event store of the test session, after the state machine and
the integration tests (which run before this directory) have written every kind of
history into it: fees on transfers and pending transfers, partial posts, voids and expiry,
reversals, transactions, batches, payouts confirmed and failed, chain deposits, policy
and lifecycle changes. Any finding here is the auditor's replay flagging a history the
ledger considers sound."""

from __future__ import annotations

from audit.rows import read_only, store_pages_at
from audit.sealer import Sealer
from audit.verify import Verifier
from commands.application import Books
from tests.conftest import Urls


def test_everything_the_ledger_wrote_verifies_clean(books: Books, servers: Urls) -> None:
    Sealer(books, servers.database_url).seal()
    with read_only(servers.database_url) as conn:
        row = conn.execute("SELECT max(notification_id), count(*) FROM ledger_events").fetchone()
    assert row is not None
    head, count = row
    verifier = Verifier()
    verifier.run_parallel(lambda shape: store_pages_at(servers.database_url, shape, head=head))
    assert [f.as_dict() for f in verifier.findings] == []
    assert verifier.events == count and verifier.seals and verifier.after_seal == 0
    assert all(total == [0, 0] for total in verifier.totals.values())
