"""Deposits into distinct accounts vs transfers between distinct accounts, 4 clients.

Every deposit also debits the asset's one issuance account; this shows whether that
shared account serialises or conflicts the writers. It drives the command handlers
directly (no HTTP) against a PostgreSQL event store with migrations applied:

    .venv/bin/python benchmarks/deposits_vs_transfers.py --database-url postgresql://postgres@127.0.0.1:55432/ledger

(`make run` in another terminal provides that database.) It prints both rates and the
number of conflict retries each needed.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable

from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount, TransferFunds
from runtime.settings import Settings


class CountingBooks(Books):
    name = "Ledger"  # the same event store table
    retries = 0

    def _retrying(self, handler: Callable[[], object], *, first: Callable[[], object] | None = None) -> object:  # type: ignore[override]
        def counted(run: Callable[[], object]) -> Callable[[], object]:
            def attempt() -> object:
                attempts.append(1)
                return run()

            return attempt

        attempts: list[int] = []
        try:
            return super()._retrying(counted(handler), first=counted(first) if first else None)
        finally:
            CountingBooks.retries += len(attempts) - 1


def run(label: str, clients: int, seconds: float, work: Callable[[int, int], None]) -> float:
    CountingBooks.retries = 0
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        while time.monotonic() < stop:
            work(n, counts[n])
            counts[n] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = sum(counts) / (time.monotonic() - started)
    print(f"{label:<40} {sum(counts):>6} in {seconds:.0f}s = {rate:7.0f}/s  conflict retries: {CountingBooks.retries}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    books = CountingBooks(event_store_env(Settings(database_url=args.database_url, db_pool_size=args.clients)))
    run_id = uuid.uuid4().hex[:8]
    asset = "BNC/2"
    sources = [f"bench-{run_id}-src-{n}" for n in range(args.clients)]
    sinks = [f"bench-{run_id}-dst-{n}" for n in range(args.clients)]
    for account in sources + sinks:
        books.open_account(OpenAccount(account, asset))
    for account in sources:
        books.deposit(Deposit(f"{account}-fund", account, "100000000.00"))

    def deposit(n: int, i: int) -> None:
        books.deposit(Deposit(f"{sinks[n]}-dep-{i}", sinks[n], "0.01"))

    def transfer(n: int, i: int) -> None:
        books.transfer(TransferFunds(f"{sources[n]}-tr-{i}", sources[n], sinks[n], "0.01"))

    transfers = run(f"transfers, {args.clients} clients, distinct accounts", args.clients, args.seconds, transfer)
    deposits = run(f"deposits, {args.clients} clients, one issuance acct", args.clients, args.seconds, deposit)
    print(f"deposits / transfers = {deposits / transfers:.0%}")
    books.close()


if __name__ == "__main__":
    main()
