"""Many threads in several processes spend from one account at once."""

from __future__ import annotations

import multiprocessing

from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount
from tests.conftest import Urls, unique
from tests.integration.spenders import spend


def test_concurrent_spenders_in_several_processes_never_overdraw(books: Books, servers: Urls) -> None:
    source = unique("hot")
    sinks = [unique("sink") for _ in range(3)]
    books.open_account(OpenAccount(source, "USD/2", overdraft_limit=500))  # may go to -5.00
    for sink in sinks:
        books.open_account(OpenAccount(sink, "USD/2"))
    books.deposit(Deposit(unique("d"), source, "40.00"))

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=spend, args=(servers.database_url, source, sink, unique("p"), 4, 6, results))
        for sink in sinks
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    moved = sum(o["ok"] for o in outcomes)
    assert sum(sum(o.values()) for o in outcomes) == 3 * 4 * 6
    # 40.00 plus the 5.00 overdraft allows 45 moves of 1.00; a few may give up as busy.
    assert 40 <= moved <= 45
    fresh = Books(event_store_env(servers.settings()))
    try:
        assert fresh.account(source).available == 4000 - 100 * moved >= -500
        assert sum(fresh.account(sink).available for sink in sinks) == 100 * moved
    finally:
        fresh.close()
