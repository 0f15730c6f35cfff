"""The write path against a plain-SQL ledger, side by side, in one run (issue 12).

Run against a running stack (`make run` in another terminal; its URLs and admin key are
found in `.ledger`):

    .venv/bin/python benchmarks/write_ratio.py --seconds 20

For each load it drives the ledger's command API (authenticated, durable; transfers of
0.01 between 50 funded accounts, random distinct pairs) for ``--seconds`` after a short
warm-up, waits until the read models have caught up (so the stack is quiet again), then
drives the reference for as long with pgbench at the same number of clients: a second,
separate embedded PostgreSQL (same binaries, started by the same code with the same
settings, on a free port, in a temporary directory), loaded with ``sql_baseline.sql``,
one ``SELECT transfer(...)`` per transaction. It prints the ratio table (Markdown), the
command that reproduces it, and with ``--json FILE`` the same figures as JSON.

Loads (``--loads``, comma-separated): ``1``, ``4``, ``8`` clients; ``hot`` (4 clients,
every transfer from one account; the reference's hot script too); ``batch`` (4 clients,
``POST /v1/transfer-batches`` of ``--batch-size``; the ratio is to the reference's
single-transfer rate at 4 clients, the issue's target is at least 5).

The figures are indicative when anything else runs on the machine: both sides share its
cores with whatever else does, and with each other's idle processes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ledger_load import (
    Load,
    Outcome,
    Stack,
    StackNotFound,
    find_stack,
    open_accounts,
    run_closed,
    run_id,
    say,
    wait_visible,
    write_json,
)
from sql_reference import (
    PgbenchResult,
    ReferenceServer,
    exit_on_sigterm,
    reference_parent,
    reference_server,
    server_settings,
)

LOADS = {
    "1": Load("1", "1 client", 1),
    "4": Load("4", "4 clients", 4),
    "8": Load("8", "8 clients", 8),
    "hot": Load("hot", "4 clients, every transfer from one account", 4, hot=True),
    "batch": Load("batch", "4 clients, `POST /v1/transfer-batches` of {batch}", 4, batch=100),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ledger write throughput as a ratio to a plain-SQL ledger on PostgreSQL (pgbench), in one run."
    )
    parser.add_argument("--seconds", type=int, default=20, help="measured seconds per load and side (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each ledger load")
    parser.add_argument(
        "--loads", default=",".join(LOADS), help=f"comma-separated subset of {', '.join(LOADS)} (default: all)"
    )
    parser.add_argument("--batch-size", type=int, default=100, help="transfers per batch request (1 to 100)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LEDGER_DATA_DIR", ".ledger")))
    parser.add_argument("--command", help="command API URL (default: the running stack's)")
    parser.add_argument("--query", help="query API URL, to wait for the read models between loads")
    parser.add_argument("--token", help="bearer key (default: the running stack's admin key)")
    parser.add_argument("--reference-dir", type=Path, help="where the reference's temporary data goes")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE (- for stdout)")
    args = parser.parse_args(argv)
    if args.seconds < 1:
        parser.error("--seconds must be at least 1 (pgbench runs whole seconds)")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if not 1 <= args.batch_size <= 100:
        parser.error("--batch-size must be 1 to 100 (the API's limit)")
    if args.reference_dir is not None and not args.reference_dir.is_dir():
        parser.error(f"--reference-dir {args.reference_dir} is not a directory")
    try:
        args.load_list = parse_loads(args.loads, args.batch_size)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def parse_loads(text: str, batch_size: int = 100) -> list[Load]:
    """The named loads, in the table's order, each once."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LOADS]
    if unknown or not names:
        raise ValueError(f"--loads: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(LOADS)}")
    chosen = [load for key, load in LOADS.items() if key in names]
    return [
        Load(load.key, load.title.format(batch=batch_size), load.clients, load.hot, batch_size) if load.batch else load
        for load in chosen
    ]


def reproduce_command(args: argparse.Namespace) -> str:
    """The command line that runs this again (never the token itself)."""
    loads = ",".join(load.key for load in args.load_list)
    argv = [".venv/bin/python", "benchmarks/write_ratio.py", "--seconds", str(args.seconds), "--loads", loads]
    if args.warmup != 2.0:
        argv += ["--warmup", f"{args.warmup:g}"]
    if args.batch_size != 100:
        argv += ["--batch-size", str(args.batch_size)]
    for flag in ("command", "query"):
        if getattr(args, flag):
            argv += [f"--{flag}", getattr(args, flag)]
    if args.token:
        argv += ["--token", "$TOKEN"]
    return shlex.join(argv).replace("'$TOKEN'", '"$TOKEN"')


def ledger_cell(outcome: Outcome) -> str:
    return (
        f"{outcome.rate:,.0f}/s (p50 {outcome.p50_ms:.0f} ms, p99 {outcome.p99_ms:.0f} ms, {outcome.refused} non-2xx)"
    )


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| load | ledger (transfers/s, p50, p99, non-2xx) | pure SQL (/s) | ratio |",
        "|---|---|---|---|",
    ]
    for row in rows:
        reference: PgbenchResult = row["reference"]
        lines.append(
            f"| {row['load'].title} | {ledger_cell(row['ledger'])} | {reference.tps:,.0f}/s"
            f"{' (4 clients, single)' if row['load'].batch else ''} | {row['ratio']:.2f} |"
        )
    return "\n".join(lines)


def compare_settings(stack: Stack, reference: ReferenceServer) -> tuple[dict[str, str], dict[str, str] | None]:
    """The reference's commit settings and, when the stack's database is reachable, the
    ledger's; differences are shown, since they would make the ratio meaningless."""
    ours = reference.settings()
    database = stack.database_url
    theirs = None
    if database:
        try:
            theirs = server_settings(database)
        except Exception as exc:  # noqa: BLE001 - a comparison we cannot make is reported, not fatal
            say(f"could not read the ledger's PostgreSQL settings: {exc}")
    shown = ", ".join(
        f"{k}={ours.get(k)}" for k in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
    )
    say(f"reference PostgreSQL: {shown} (pid {reference.pid}, {reference.data_dir})")
    if theirs is not None:
        differ = {k: (theirs.get(k), ours.get(k)) for k in ours if theirs.get(k) != ours.get(k)}
        if differ:
            say(
                "WARNING: the ledger's PostgreSQL differs from the reference: "
                + ", ".join(f"{k} ledger={a} reference={b}" for k, (a, b) in differ.items())
            )
        else:
            say("the ledger's PostgreSQL has the same commit settings")
    return ours, theirs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    try:
        stack = find_stack(args.data_dir, args.command, args.query, args.token)
    except StackNotFound as exc:
        print(f"write_ratio: {exc}", file=sys.stderr)
        return 2
    loads: list[Load] = args.load_list
    parent, warning = reference_parent(args.reference_dir, stack.data_dir)
    if warning:
        say(warning)
    run = run_id()
    say(f"ledger at {stack.command}; {args.seconds} s per load and side, {len(loads)} loads (run {run})")
    rows: list[dict[str, Any]] = []
    with reference_server(parent) as reference:
        settings, ledger_settings = compare_settings(stack, reference)
        say("reference: warming up (pgbench, 4 clients, 2 s)")
        reference.pgbench(clients=4, seconds=2)
        say("ledger: opening and funding 50 accounts")
        accounts = open_accounts(stack, run)
        single_at_4: PgbenchResult | None = None
        for load in loads:
            prefix = f"{run}-{load.key}"

            def progress(elapsed: float, sent: int, title: str = load.title) -> None:
                say(f"  {title}: {elapsed:4.0f} s, {sent} transfers sent")

            if args.warmup > 0:
                run_closed(stack, load, accounts, args.warmup, f"{prefix}-w")
            say(f"ledger, {load.title}: {args.seconds} s")
            outcome = run_closed(stack, load, accounts, args.seconds, prefix, progress)
            waited = wait_visible(stack, outcome.position, timeout=120)
            say(
                f"  {outcome.rate:,.0f} transfers/s, p50 {outcome.p50_ms:.0f} ms, p99 {outcome.p99_ms:.0f} ms, "
                f"statuses {outcome.statuses}; load generator CPU {outcome.client_cpu_seconds / outcome.seconds:.0%} "
                f"of a core; read models caught up "
                + (f"{waited:.1f} s later" if waited is not None else "NOT within 120 s")
            )
            if load.batch and single_at_4 is not None:
                result = single_at_4
            else:
                title = "4 clients, single transfers (the batch row's reference)" if load.batch else load.title
                say(f"reference, {title}: {args.seconds} s")
                result = reference.pgbench(clients=load.clients, seconds=args.seconds, hot=load.hot)
                say(f"  {result.tps:,.0f} transfers/s, latency average {result.latency_ms:.1f} ms")
                if load.clients == 4 and not load.hot:
                    single_at_4 = result
            rows.append(
                {
                    "load": load,
                    "ledger": outcome,
                    "reference": result,
                    "ratio": outcome.rate / result.tps if result.tps else 0.0,
                }
            )

    command = reproduce_command(args)
    print(table(rows))
    print(f"\nreproduce: {command}")
    if args.json:
        document = {
            "seconds": args.seconds,
            "command": command,
            "ledger": {"command_api": stack.command, "postgres_settings": ledger_settings},
            "reference": {"postgres_settings": settings, "driver": "pgbench -M prepared, sql_baseline.sql"},
            "rows": [
                {
                    "load": row["load"].key,
                    "title": row["load"].title,
                    "clients": row["load"].clients,
                    "hot": row["load"].hot,
                    "batch": row["load"].batch,
                    "ledger": asdict(row["ledger"]) | {"rate": row["ledger"].rate},
                    "reference": asdict(row["reference"]),
                    "ratio": row["ratio"],
                }
                for row in rows
            ],
        }
        write_json(document, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
