"""The command side's own CPU per transfer, without HTTP: the application in this process.

Against a running stack's event store (`make run` in another terminal; found from
`.ledger` like every `ledger` command), it opens and funds ``--accounts`` accounts (50), then sends
``--singles`` transfers one after another (each its own group and save) and ``--batches``
batches of ``--batch-size`` (100), and prints this process's CPU time per transfer for each: the handlers,
the unit of work, event encoding and psycopg, with no web server and no load generator
in the figure. PostgreSQL's share is not in it (see ``cpu_budget.py`` for every process).

    .venv/bin/python benchmarks/command_cpu.py --singles 2000 --batches 40

A change on the write path can be compared before and after with it more closely than
with rates over HTTP, which move with whatever else the machine does.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections.abc import Callable

from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount, TransferBatch, TransferFunds
from runtime.settings import Settings


def measure(label: str, transfers: int, send: Callable[[], None]) -> None:
    cpu, wall = time.process_time(), time.monotonic()
    send()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(
        f"{label}: {1000 * cpu / transfers:.3f} ms CPU per transfer ({transfers} in {wall:.1f} s, {transfers / wall:,.0f}/s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The command side's CPU per transfer, in-process.")
    parser.add_argument("--singles", type=int, default=2000, help="transfers sent one by one (default 2000)")
    parser.add_argument("--batches", type=int, default=40, help="batches (default 40)")
    parser.add_argument("--batch-size", type=int, default=100, help="transfers per batch (default 100)")
    parser.add_argument("--accounts", type=int, default=50, help="accounts the transfers go between (default 50)")
    parser.add_argument("--warm-up", type=int, default=200, help="unmeasured transfers first (default 200)")
    args = parser.parse_args(argv)
    if args.singles < 1 or args.batches < 0 or not 1 <= args.batch_size <= 100 or args.accounts < 2 or args.warm_up < 0:
        parser.error(
            "--singles, --batch-size (up to 100) and --accounts (2 or more) count; --batches, --warm-up may be 0"
        )
    books = Books(event_store_env(Settings.from_env()))
    run = uuid.uuid4().hex[:8]
    accounts = [f"cpu-{run}-{n}" for n in range(args.accounts)]
    pick = random.Random(run)
    count = 0

    def leg() -> TransferFunds:
        nonlocal count
        count += 1
        debit = pick.randrange(args.accounts)
        credit = (debit + 1 + pick.randrange(args.accounts - 1)) % args.accounts
        return TransferFunds(f"t-{run}-{count}", accounts[debit], accounts[credit], "0.01")

    try:
        for account in accounts:
            books.open_account(OpenAccount(account, "USD/2"))
            books.deposit(Deposit(f"d-{account}", account, "1000000.00"))
        for _ in range(args.warm_up):
            books.transfer(leg())
        measure("singles", args.singles, lambda: [books.transfer(leg()) for _ in range(args.singles)])
        if args.batches:
            size = args.batch_size
            measure(
                f"batches of {size}",
                size * args.batches,
                lambda: [
                    books.transfer_batch(TransferBatch([leg() for _ in range(size)])) for _ in range(args.batches)
                ],
            )
    finally:
        books.close()
    print(
        f"reproduce: .venv/bin/python benchmarks/command_cpu.py --singles {args.singles} --batches {args.batches} "
        f"--batch-size {args.batch_size} --accounts {args.accounts} --warm-up {args.warm_up}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
