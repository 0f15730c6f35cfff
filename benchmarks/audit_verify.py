"""How fast `ledger audit verify` replays a large store (without the MongoDB comparison).

It starts an embedded PostgreSQL of its own (or uses --database-url, which must be an
empty, migrated database), writes a history of at least --events events through the
ledger's own command handlers (batches of 100 transfers between 1,000 accounts, with a
fee rule, and a seal every --seal-every events), then runs the real command,
`ledger audit verify --no-read-model`, and prints what its report measured:

    .venv/bin/python benchmarks/audit_verify.py --events 1000000

Writing the history takes a few minutes; --keep DIR keeps the generated store there so
that later runs with the same DIR only verify.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from tqdm import tqdm

from audit.sealer import Sealer
from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount, SetFeeRule, TransferBatch, TransferFunds
from devstack.embedded import EmbeddedPostgres
from ledger.fees import FeeTerms
from runtime.migrations import migrate
from runtime.settings import PROJECT_ROOT, Settings

ACCOUNTS = 1000


def count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
        return int(row[0]) if row else 0


def generate(url: str, events: int, seal_every: int) -> None:
    books = Books(event_store_env(Settings(database_url=url)))
    sealer = Sealer(books, url)
    accounts = [f"acct-{n}" for n in range(ACCOUNTS)]
    have = count(url)
    if have == 0:
        for account in accounts:
            books.open_account(OpenAccount(account, "USD/2"))
            books.deposit(Deposit(f"dep-{account}", account, "1000000.00"))
        books.set_fee_rule(SetFeeRule("USD/2", "transfer", FeeTerms(0, 1, 0, None, "sender")))
    rng = random.Random(7)
    batch = 0
    last_seal = have
    with tqdm(total=events, initial=have, unit="ev", unit_scale=True, desc="writing") as progress:
        while have < events:
            transfers = []
            for n in range(100):
                a, b = rng.sample(accounts, 2)
                transfers.append(
                    TransferFunds(f"b{have}-{batch}-{n}", a, b, f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}")
                )
            books.transfer_batch(TransferBatch(tuple(transfers)))
            batch += 1
            now = books.head_position()
            progress.update(now - have)
            have = now
            if have - last_seal >= seal_every:
                sealer.seal()
                last_seal = have
    sealer.seal()
    books.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seal-every", type=int, default=100_000)
    parser.add_argument("--database-url")
    parser.add_argument("--keep", type=Path, help="Keep the generated store in this directory.")
    parser.add_argument("--runs", type=int, default=3, help="Verify this many times.")
    args = parser.parse_args()

    server = None
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    url = args.database_url
    try:
        if url is None:
            server = EmbeddedPostgres(data_dir, 55499)
            server.start()
            url = server.url
        migrate(url, PROJECT_ROOT / "migrations")
        if count(url) < args.events:
            started = time.monotonic()
            generate(url, args.events, args.seal_every)
            print(f"wrote the history in {time.monotonic() - started:.0f} s")
        report = data_dir / "verify-report.json"
        env = dict(os.environ, LEDGER_DATABASE_URL=url, LEDGER_LOG_LEVEL="WARNING")
        rates = []
        for run in range(1, args.runs + 1):  # the first run meets a cold database cache
            started = time.monotonic()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "entrypoints.cli",
                    "audit",
                    "verify",
                    "--no-read-model",
                    "--report",
                    str(report),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                check=False,
            )
            wall = time.monotonic() - started
            result = json.loads(report.read_text())
            rates.append(result["events_per_second"])
            print(
                f"verify run {run}: {result['events']} events, {result['streams']} streams, "
                f"{result['seals']['checked']} seals, {len(result['findings'])} findings; replay "
                f"{result['elapsed_seconds']} s = {result['events_per_second']} events/s; "
                f"whole command {wall:.1f} s (exit {done.returncode})"
            )
        print(
            f"events/s over {len(rates)} runs: min {min(rates)}, median {sorted(rates)[len(rates) // 2]}, max {max(rates)}"
        )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
