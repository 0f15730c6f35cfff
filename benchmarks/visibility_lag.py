"""Commit-to-visibility lag under a steady, paced load, minute by minute.

Run against a running stack (`make run` in another terminal, from the same checkout):

    .venv/bin/python benchmarks/visibility_lag.py --rate 60 --seconds 600

N writer threads (``--writers``, default 4) send single transfers to the command API at
``--rate`` transfers/s in all, each on a fixed schedule (open loop: a slow answer does
not lower the offered rate, the next write goes out on time or at once). Each answer's
``position`` is the write's commit; one poller reads the query API's ``GET /v1/status``
every ``--poll-ms`` and, as ``read_model_position`` passes a write's position, records
the lag from the write's answer to that poll. It prints p50/p99/max per window (a minute
by default) and overall, whether the projector caught up with everything written at the
end, and, when it finds the stack's ``.ledger/run/state.json``, the CPU each process of
the stack used during the load (% of one core and CPU ms per transfer).

The question it answers: does the read side keep up *for minutes*, i.e. does the lag stay
flat (the last window's p99 close to the first's) instead of growing with the run.
"""

from __future__ import annotations

import argparse
import heapq
import json
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests


@dataclass
class Observations:
    """What the writers and the poller share (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: list[tuple[int, float, float]] = field(default_factory=list)  # heap of (position, answered_at, sent_at)
    lags: list[tuple[float, float]] = field(default_factory=list)  # (sent_at - start, lag seconds)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    highest: int = 0
    late_starts: int = 0


def stack_state(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "run" / "state.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (gunicorn workers, postgres
    backends), those that have exited included (as their parent reaped them), 0 if it is gone."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".ledger"), help="the stack's data directory")
    parser.add_argument("--command", default=None, help="command API URL (default: from the stack's state.json)")
    parser.add_argument("--query", default=None, help="query API URL (default: from the stack's state.json)")
    parser.add_argument("--token", default=None, help="bearer key (default: <data-dir>/admin.key)")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=60.0, help="transfers per second, all writers together")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per reported window")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="how often the poller reads /v1/status")
    parser.add_argument("--catch-up", type=float, default=60.0, help="seconds to wait for the projector at the end")
    args = parser.parse_args()

    state = stack_state(args.data_dir)
    urls = state.get("urls", {})
    command = args.command or urls.get("command_api", "http://127.0.0.1:8081")
    query = args.query or urls.get("query_api", "http://127.0.0.1:8082")
    token = args.token or (args.data_dir / "admin.key").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}

    run = uuid.uuid4().hex[:8]
    setup = requests.Session()
    setup.headers.update(headers)
    pairs = []
    for n in range(args.writers):
        a, b = f"lag-{run}-{n}-a", f"lag-{run}-{n}-b"
        for account in (a, b):
            setup.post(f"{command}/v1/accounts", json={"id": account, "asset": "USD/2"}, timeout=30).raise_for_status()
        setup.post(
            f"{command}/v1/deposits", json={"id": f"{a}-fund", "account": a, "amount": "100000000.00"}, timeout=30
        ).raise_for_status()
        pairs.append((a, b))

    obs = Observations()
    interval = args.writers / args.rate  # each writer's period
    start = time.monotonic() + 0.5
    end = start + args.seconds
    writing = threading.Event()
    writing.set()

    def writer(index: int, a: str, b: str) -> None:
        http = requests.Session()
        http.headers.update(headers)
        k = 0
        while True:
            due = start + index * interval / args.writers + k * interval
            if due >= end:
                return
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -interval:
                with obs.lock:
                    obs.late_starts += 1
            sent = time.monotonic()
            try:
                reply = http.post(
                    f"{command}/v1/transfers",
                    json={"id": f"{a}-{k}", "debit_account": a, "credit_account": b, "amount": "0.01"},
                    timeout=30,
                )
            except requests.RequestException as exc:
                with obs.lock:
                    obs.failures.append(repr(exc))
                k += 1
                continue
            answered = time.monotonic()
            with obs.lock:
                if reply.status_code == 201:
                    position = int(reply.json()["position"])
                    heapq.heappush(obs.waiting, (position, answered, sent))
                    obs.highest = max(obs.highest, position)
                    obs.latencies.append(answered - sent)
                else:
                    obs.failures.append(f"{reply.status_code}: {reply.text[:200]}")
            k += 1

    def poller(stop: threading.Event) -> None:
        http = requests.Session()
        http.headers.update(headers)
        while not stop.is_set():
            try:
                seen = int(http.get(f"{query}/v1/status", timeout=10).json()["read_model_position"])
            except (requests.RequestException, ValueError, KeyError) as exc:
                with obs.lock:
                    obs.failures.append(f"status: {exc!r}")
                time.sleep(0.5)
                continue
            now = time.monotonic()
            with obs.lock:
                while obs.waiting and obs.waiting[0][0] <= seen:
                    _, answered, sent = heapq.heappop(obs.waiting)
                    obs.lags.append((sent - start, now - answered))
            time.sleep(args.poll_ms / 1000)

    children: dict[str, int] = dict(state.get("children", {}))
    cpu_before = {name: cpu_seconds(pid) for name, pid in children.items()}
    stop_polling = threading.Event()
    threads = [threading.Thread(target=writer, args=(i, a, b)) for i, (a, b) in enumerate(pairs)]
    poll_thread = threading.Thread(target=poller, args=(stop_polling,))
    poll_thread.start()
    for thread in threads:
        thread.start()
    last_report = start
    # CPU per window too: a cost that grows with the run (the broker's fetches) shows here.
    window_cpu: list[dict[str, float]] = []
    window_mark, window_before = start, cpu_before
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if children and time.monotonic() - window_mark >= args.window:
            now_cpu = {name: cpu_seconds(pid) for name, pid in children.items()}
            elapsed = time.monotonic() - window_mark
            window_cpu.append({n: 100 * (now_cpu[n] - window_before[n]) / elapsed for n in children})
            window_mark, window_before = time.monotonic(), now_cpu
        if time.monotonic() - last_report >= 30:
            last_report = time.monotonic()
            with obs.lock:
                done, behind = len(obs.lags), len(obs.waiting)
            print(f"  {last_report - start:5.0f}s: {done} visible, {behind} not yet", file=sys.stderr, flush=True)
    for thread in threads:
        thread.join()
    wall = time.monotonic() - start
    cpu_after = {name: cpu_seconds(pid) for name, pid in children.items()}
    if children and time.monotonic() - window_mark > args.window / 2:
        elapsed = time.monotonic() - window_mark
        window_cpu.append({n: 100 * (cpu_after[n] - window_before[n]) / elapsed for n in children})

    # Caught up: everything written is visible, and the read model is at the store's head.
    caught_up_in: float | None = None
    deadline = time.monotonic() + args.catch_up
    finished = time.monotonic()
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with obs.lock:
            behind = len(obs.waiting)
        try:
            status = requests.get(f"{query}/v1/status", headers=headers, timeout=10).json()
        except requests.RequestException:
            status = {}
        if behind == 0 and status.get("lag") == 0:
            caught_up_in = time.monotonic() - finished
            break
        time.sleep(0.1)
    stop_polling.set()
    poll_thread.join()

    written = len(obs.latencies)
    print(
        f"writers={args.writers} offered={args.rate:g}/s seconds={args.seconds:g} written={written} "
        f"achieved={written / wall:.1f}/s failures={len(obs.failures)} late_starts={obs.late_starts}"
    )
    if obs.latencies:
        print(f"write latency ms: p50={pct(obs.latencies, 0.5):.1f} p99={pct(obs.latencies, 0.99):.1f}")
    print(f"commit->visibility ms (poll every {args.poll_ms:g} ms), by window of {args.window:g} s:")
    windows = max(1, int(-(-args.seconds // args.window)))
    first_p99 = last_p99 = None
    for w in range(windows):
        lags = [lag for at, lag in obs.lags if w * args.window <= at < (w + 1) * args.window]
        if not lags:
            print(f"  {w * args.window:5.0f}-{(w + 1) * args.window:<5.0f}s  n=0")
            continue
        p99 = pct(lags, 0.99)
        first_p99 = p99 if first_p99 is None else first_p99
        last_p99 = p99
        print(
            f"  {w * args.window:5.0f}-{(w + 1) * args.window:<5.0f}s  n={len(lags):5d}  p50={pct(lags, 0.5):7.1f}  "
            f"p99={p99:7.1f}  max={max(lags) * 1000:7.1f}"
        )
    every = [lag for _, lag in obs.lags]
    if every:
        print(
            f"  overall          n={len(every):5d}  p50={pct(every, 0.5):7.1f}  p99={pct(every, 0.99):7.1f}  "
            f"max={max(every) * 1000:7.1f}  mean={statistics.mean(every) * 1000:.1f}"
        )
    if first_p99 and last_p99:
        print(f"last window's p99 / first window's p99 = {last_p99 / first_p99:.2f}")
    if caught_up_in is not None:
        print(f"projector caught up: yes, {caught_up_in:.2f} s after the last write (status lag 0)")
    else:
        print(f"projector caught up: NO within {args.catch_up:g} s ({len(obs.waiting)} writes not visible; {status})")
    if children and written:
        print(f"CPU during the load ({wall:.0f} s, {written / wall:.1f} transfers/s; process and its children):")
        for name in sorted(children, key=lambda n: cpu_before[n] - cpu_after[n]):
            used = cpu_after[name] - cpu_before[name]
            print(f"  {name:12s} {100 * used / wall:6.1f}% of a core  {1000 * used / written:6.2f} ms/transfer")
        total = sum(cpu_after.values()) - sum(cpu_before.values())
        print(f"  {'total':12s} {100 * total / wall:6.1f}% of a core  {1000 * total / written:6.2f} ms/transfer")
        shown = ("kafka", "mongo", "projector", "relay", "query-api", "command-api", "postgres")
        print("CPU % of a core by window: " + " ".join(f"{name:>11s}" for name in shown if name in children))
        for w, usage in enumerate(window_cpu):
            cells = " ".join(f"{usage[name]:11.1f}" for name in shown if name in children)
            print(f"  window {w + 1:3d}                " + cells)
    if obs.failures:
        print("first failures:", obs.failures[:3])


if __name__ == "__main__":
    main()
