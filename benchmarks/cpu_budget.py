"""CPU milliseconds per transfer for each process of a running stack, at a steady load (issue 12).

Run against a running stack (`make run` in another terminal; its processes are found in
`.ledger/run/state.json`, its admin key in `.ledger/admin.key`):

    .venv/bin/python benchmarks/cpu_budget.py --rate 50 --seconds 20 --with-reference

It opens 50 funded accounts, sends single transfers (0.01 between random distinct pairs;
with ``--batch N``, ``POST /v1/transfer-batches`` of N) at ``--rate`` transfers a second
from 4 paced senders, and reads every process's CPU time (user +
system, with psutil) before and after: each service with all its descendants (the
command API's gunicorn master and workers, PostgreSQL's postmaster and every backend),
including descendants that ended in between (their time is in their parent's reaped
children's time). The window starts once the read models have caught up with the
warm-up and ends once they have caught up with the load, so every process's share of
the window's transfers (relay, broker, projector, MongoDB server) is inside it. It
prints, per process, CPU ms per transfer and the % of a core it used over the window,
and the whole stack's total.

With ``--with-reference`` it then starts the plain-SQL reference (``sql_reference``: a
second embedded PostgreSQL running ``sql_baseline.sql``) and drives it with pgbench at the
same rate, 4 clients, for as long, and prints the reference server's CPU per transfer and
the stack's multiple of it (the issue's target: at most 3x).

The load generator's own CPU (and pgbench's) is shown, not counted: it is the client's.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from ledger_load import StackNotFound, find_stack, open_accounts, run_id, run_paced, say, wait_visible, write_json
from sql_reference import exit_on_sigterm, reference_parent, reference_server


@dataclass(frozen=True)
class Times:
    """One process's CPU seconds at a moment: its own, and its ended children's that it reaped."""

    started: float  # create time: tells a process from a later one with the same pid
    parent: int
    own: float
    reaped: float


def snapshot(pid: int, *, descendants: bool = True) -> dict[int, Times]:
    """CPU times of ``pid`` and (by default) all its descendants; processes that end while
    being read are left out (their time reaches their parent's reaped total)."""
    try:
        root = psutil.Process(pid)
        processes = [root] + (root.children(recursive=True) if descendants else [])
    except psutil.NoSuchProcess:
        return {}
    found: dict[int, Times] = {}
    for process in processes:
        try:
            with process.oneshot():
                cpu = process.cpu_times()
                found[process.pid] = Times(
                    process.create_time(),
                    process.ppid(),
                    cpu.user + cpu.system,
                    getattr(cpu, "children_user", 0.0) + getattr(cpu, "children_system", 0.0),
                )
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def cpu_between(before: dict[int, Times], after: dict[int, Times], *, reaped: bool = True) -> float:
    """CPU seconds a process tree spent between two snapshots.

    Each process alive at the end counts what it spent since the start (all of it if it
    is new), plus what its children that ended meanwhile spent (the growth of its reaped
    total, ``reaped``). A child that was already running at the start and ended since is
    in that growth with its whole life, so its time before the start is taken off again."""

    def same(pid: int) -> bool:
        return pid in before and pid in after and before[pid].started == after[pid].started

    total = 0.0
    for pid, now in after.items():
        then = before[pid] if same(pid) else None
        total += now.own - (then.own if then else 0.0)
        if reaped:
            total += now.reaped - (then.reaped if then else 0.0)
    if reaped:
        for pid, then in before.items():
            if not same(pid) and same(then.parent):
                total -= then.own + then.reaped
    return max(total, 0.0)


def stack_processes(state: dict[str, Any]) -> dict[str, int]:
    """Name to PID of every process `ledger up` runs, as its state file publishes them."""
    processes = {"supervisor": int(state["supervisor"])} if "supervisor" in state else {}
    processes |= {str(name): int(pid) for name, pid in state.get("children", {}).items() if pid}
    return processes


def label(name: str, pid: int) -> str:
    """A row's name, saying what it covers when the process has descendants."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return f"{name} (ended)"
    if name == "supervisor" or not children:
        return name
    if name == "postgres":
        return f"postgres (postmaster + {len(children)} processes)"
    return f"{name} (master + {len(children)} workers)" if name.endswith("-api") else f"{name} (+{len(children)})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="CPU milliseconds per transfer for each process of a running `ledger up`, at a paced load."
    )
    parser.add_argument("--rate", type=float, default=50.0, help="transfers per second, in all (default 50)")
    parser.add_argument("--seconds", type=int, default=20, help="measured seconds (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds of load before (default 3)")
    parser.add_argument("--senders", type=int, default=4, help="paced senders; pgbench clients too (default 4)")
    parser.add_argument(
        "--batch", type=int, default=0, help="send POST /v1/transfer-batches of this many (default 0: single transfers)"
    )
    parser.add_argument("--with-reference", action="store_true", help="also measure the plain-SQL reference")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LEDGER_DATA_DIR", ".ledger")))
    parser.add_argument("--token", help="bearer key (default: the running stack's admin key)")
    parser.add_argument("--reference-dir", type=Path, help="where the reference's temporary data goes")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE (- for stdout)")
    args = parser.parse_args(argv)
    if not args.rate > 0:
        parser.error("--rate must be more than 0")
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if args.senders < 1:
        parser.error("--senders must be at least 1")
    if not 0 <= args.batch <= 100:
        parser.error("--batch must be between 0 and 100")
    if args.reference_dir is not None and not args.reference_dir.is_dir():
        parser.error(f"--reference-dir {args.reference_dir} is not a directory")
    return args


def measure_reference(args: argparse.Namespace, ledger_data: Path | None) -> dict[str, float]:
    """The reference server's CPU per transfer under pgbench at the same rate and clients."""
    parent, warning = reference_parent(args.reference_dir, ledger_data)
    if warning:
        say(warning)
    with reference_server(parent) as reference:
        say(f"reference: PostgreSQL pid {reference.pid}; warming up (pgbench, 2 s)")
        reference.pgbench(clients=args.senders, seconds=2, rate=args.rate)
        resting = len(psutil.Process(reference.pid).children())
        before = snapshot(reference.pid)
        pgbench_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.monotonic()
        say(f"reference: pgbench, {args.senders} clients at {args.rate:g}/s for {args.seconds} s")
        result = reference.pgbench(clients=args.senders, seconds=args.seconds, rate=args.rate)
        _wait_backends_gone(reference.pid, resting)
        after = snapshot(reference.pid)
        wall = time.monotonic() - began
        pgbench_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_between(before, after)
    client = (pgbench_after.ru_utime + pgbench_after.ru_stime) - (pgbench_before.ru_utime + pgbench_before.ru_stime)
    return {
        "transfers": result.transactions,
        "tps": result.tps,
        "cpu_seconds": cpu,
        "ms_per_transfer": cpu * 1000 / max(result.transactions, 1),
        "core_percent": cpu / wall * 100,
        "pgbench_ms_per_transfer": client * 1000 / max(result.transactions, 1),
    }


def _wait_backends_gone(pid: int, resting: int, seconds: float = 5.0) -> None:
    """Until the server has reaped the backends of pgbench's connections (their CPU time
    then counts in its reaped total) or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if len(psutil.Process(pid).children()) <= resting:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    try:
        stack = find_stack(args.data_dir, token=args.token)
    except StackNotFound as exc:
        print(f"cpu_budget: {exc}", file=sys.stderr)
        return 2
    processes = stack_processes(stack.state)
    if not processes:
        print(f"cpu_budget: no process list in {args.data_dir / 'run' / 'state.json'}", file=sys.stderr)
        return 2
    run = run_id()
    say(f"ledger at {stack.command}: {len(processes)} processes; opening and funding 50 accounts")
    accounts = open_accounts(stack, run)
    if args.warmup > 0:
        warm = run_paced(stack, accounts, args.rate, args.warmup, f"{run}-w", args.senders, batch=args.batch)
        wait_visible(stack, warm.position, timeout=120)
    before = {name: snapshot(pid, descendants=name != "supervisor") for name, pid in processes.items()}
    began = time.monotonic()
    sending = f"in batches of {args.batch} " if args.batch else ""
    say(f"ledger: {args.rate:g} transfers/s {sending}from {args.senders} senders for {args.seconds} s")
    outcome = run_paced(
        stack,
        accounts,
        args.rate,
        args.seconds,
        run,
        args.senders,
        lambda elapsed, sent: say(f"  {elapsed:4.0f} s, {sent} transfers sent"),
        batch=args.batch,
    )
    caught_up = wait_visible(stack, outcome.position, timeout=120)
    after = {name: snapshot(pid, descendants=name != "supervisor") for name, pid in processes.items()}
    wall = time.monotonic() - began
    transfers = outcome.transfers
    if transfers == 0:
        print(f"cpu_budget: no transfer went through (statuses {outcome.statuses})", file=sys.stderr)
        return 1
    rows = []
    for name, pid in processes.items():
        cpu = cpu_between(before[name], after[name], reaped=name != "supervisor")
        restarted = before[name].get(pid) is None or after[name].get(pid) is None
        rows.append(
            {
                "process": label(name, pid) + (" RESTARTED: not comparable" if restarted else ""),
                "name": name,
                "pid": pid,
                "cpu_seconds": cpu,
                "ms_per_transfer": cpu * 1000 / transfers,
                "core_percent": cpu / wall * 100,
            }
        )
    rows.sort(key=lambda row: -row["cpu_seconds"])
    total = sum(row["cpu_seconds"] for row in rows)
    reference = measure_reference(args, stack.data_dir) if args.with_reference else None

    print(
        f"{transfers} transfers in {wall:.1f} s ({outcome.rate:.1f}/s offered {args.rate:g}/s; "
        f"statuses {outcome.statuses}); read models caught up "
        + (f"{caught_up:.1f} s after the load" if caught_up is not None else "NOT within 120 s: figures are low")
    )
    print()
    print("| process | CPU ms per transfer | % of a core |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['process']} | {row['ms_per_transfer']:.2f} | {row['core_percent']:.1f}% |")
    print(f"| **whole stack** | **{total * 1000 / transfers:.2f}** | **{total / wall * 100:.1f}%** |")
    if reference is not None:
        print(
            f"| reference PostgreSQL (pgbench, {args.senders} clients at {args.rate:g}/s, "
            f"{reference['transfers']} transfers) | {reference['ms_per_transfer']:.2f} | "
            f"{reference['core_percent']:.1f}% |"
        )
        ratio = total * 1000 / transfers / reference["ms_per_transfer"] if reference["ms_per_transfer"] else 0.0
        print(f"\nwhole stack / reference: {ratio:.1f}x the CPU per transfer (target: at most 3x)")
    print(
        f"\nnot counted: the load generator used {outcome.client_cpu_seconds * 1000 / max(transfers, 1):.2f} ms "
        "per transfer" + (f", pgbench {reference['pgbench_ms_per_transfer']:.2f} ms" if reference else "")
    )
    command = [
        ".venv/bin/python",
        "benchmarks/cpu_budget.py",
        "--rate",
        f"{args.rate:g}",
        "--seconds",
        str(args.seconds),
    ]
    if args.senders != 4:
        command += ["--senders", str(args.senders)]
    if args.batch:
        command += ["--batch", str(args.batch)]
    if args.with_reference:
        command.append("--with-reference")
    print("reproduce: " + " ".join(command))
    if args.json:
        document = {
            "rate": args.rate,
            "batch": args.batch,
            "seconds": args.seconds,
            "transfers": transfers,
            "wall_seconds": wall,
            "processes": rows,
            "total": {"cpu_seconds": total, "ms_per_transfer": total * 1000 / transfers},
            "reference": reference,
            "command": " ".join(command),
        }
        write_json(document, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
