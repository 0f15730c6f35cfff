"""A spender process for the concurrency test (a module, so spawned processes can import it)."""

from __future__ import annotations

import threading
from multiprocessing.queues import Queue

from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import TransferFunds
from ledger.errors import Busy, InsufficientFunds
from runtime.settings import Settings


def spend(database_url: str, source: str, sink: str, prefix: str, threads: int, attempts: int, results: Queue) -> None:
    books = Books(event_store_env(Settings(database_url=database_url, db_pool_size=threads)))
    counts = {"ok": 0, "refused": 0, "busy": 0}
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(attempts):
            try:
                books.transfer(TransferFunds(f"{prefix}-{n}-{i}", source, sink, "1.00"))
                outcome = "ok"
            except InsufficientFunds:
                outcome = "refused"
            except Busy:
                outcome = "busy"
            with lock:
                counts[outcome] += 1

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    books.close()
    results.put(counts)
