"""Transfers per second through the command API, and time until the query API shows them.

Run against a running stack (`make run` in another terminal):

    .venv/bin/python benchmarks/http_transfers.py --clients 4 --seconds 20

It opens 2 x clients accounts, funds them, then each client sends transfers between its own
pair of accounts (no shared hot account) for the given time. It prints the rate, request
latency percentiles and, for a sample of writes, the delay until the read model applied
them (polling the query API with min_position).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from pathlib import Path

import requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--command", default="http://127.0.0.1:8081")
    parser.add_argument("--query", default="http://127.0.0.1:8082")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--token", default=None, help="bearer key (default: .ledger/admin.key, made by `ledger up`)")
    args = parser.parse_args()
    token = args.token or Path(".ledger/admin.key").read_text().strip()
    run = uuid.uuid4().hex[:8]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    pairs = []
    for n in range(args.clients):
        a, b = f"bench-{run}-{n}-a", f"bench-{run}-{n}-b"
        for account in (a, b):
            session.post(f"{args.command}/v1/accounts", json={"id": account, "asset": "USD/2"}).raise_for_status()
        session.post(
            f"{args.command}/v1/deposits", json={"id": f"{a}-fund", "account": a, "amount": "1000000.00"}
        ).raise_for_status()
        pairs.append((a, b))

    latencies: list[float] = []
    visibility: list[float] = []
    stop = time.monotonic() + args.seconds
    lock = threading.Lock()
    latest: list[tuple[int, float, str] | None] = [None]

    def client(a: str, b: str) -> None:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        count = 0
        while time.monotonic() < stop:
            started = time.monotonic()
            reply = http.post(
                f"{args.command}/v1/transfers",
                json={"id": f"{a}-{count}", "debit_account": a, "credit_account": b, "amount": "0.01"},
            )
            reply.raise_for_status()
            elapsed = time.monotonic() - started
            with lock:
                latencies.append(elapsed)
                latest[0] = (reply.json()["position"], time.monotonic(), b)
            count += 1

    def observer() -> None:
        """Samples the newest write every 100 ms and times until the query API shows it."""
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        while time.monotonic() < stop:
            time.sleep(0.1)
            with lock:
                sample = latest[0]
            if sample is None:
                continue
            position, written_at, account = sample
            while http.get(f"{args.query}/v1/accounts/{account}", params={"min_position": position}).status_code != 200:
                pass
            visibility.append(time.monotonic() - written_at)

    threads = [threading.Thread(target=client, args=pair) for pair in pairs]
    threads.append(threading.Thread(target=observer))
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began
    latencies.sort()
    visibility.sort()

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    print(f"clients={args.clients} transfers={len(latencies)} seconds={took:.1f} rate={len(latencies) / took:.0f}/s")
    print(
        f"latency ms: p50={pct(latencies, 0.5):.1f} p99={pct(latencies, 0.99):.1f} mean={statistics.mean(latencies) * 1000:.1f}"
    )
    if visibility:
        print(
            f"visible in query API after ms: p50={pct(visibility, 0.5):.1f} p99={pct(visibility, 0.99):.1f} (n={len(visibility)})"
        )


if __name__ == "__main__":
    main()
