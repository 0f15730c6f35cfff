"""Projection throughput, and the lag from commit to query visibility under steady load.

Run against a running stack (`make run` in another terminal; it writes .ledger/run/state.json):

    PYTHONPATH=src .venv/bin/python benchmarks/projection.py --rate 500 --seconds 20

1. Throughput: the relay publishes the whole event store to a fresh topic, then a fresh
   projector applies it to an empty database; both are timed (events/s).
2. Lag: writer threads send transfers to the command API at a steady target rate; for
   every 10th write, an observer times how long until the query API shows it
   (min_position). It prints the rate achieved and the p50/p99 lag.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pymongo
import requests

from commands.application import Ledger, event_store_env
from projectors.projector import Projector
from projectors.relay import Relay, RelayState
from queries.readmodel import watermark
from runtime.settings import Settings


def throughput(urls: dict[str, str]) -> None:
    ledger = Ledger(event_store_env(Settings(database_url=urls["database_url"])))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    relay = Relay(
        ledger, RelayState(urls["database_url"], topic), urls["database_url"], urls["kafka_bootstrap"], topic, 4
    )
    relay.start()
    head = ledger.head_position()
    started = time.monotonic()
    while relay.publish_batch():
        pass
    relayed = time.monotonic() - started
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(urls["mongo_url"])
    db = client[f"bench_{uuid.uuid4().hex[:8]}"]
    projector = Projector(db, urls["kafka_bootstrap"], topic, 4, group=topic)
    projector.start()
    started = time.monotonic()
    while watermark(db) < head:
        projector.process_batch(0.2)
    projected = time.monotonic() - started
    with ledger.recorder.datastore.transaction(commit=False) as curs:  # type: ignore[attr-defined]
        curs.execute("SELECT count(*) AS n FROM ledger_events")
        count = int(curs.fetchone()["n"])
    print(f"events in the store: {count}")
    print(f"relay:     {count / relayed:8.0f} events/s ({relayed:.1f}s)")
    print(f"projector: {count / projected:8.0f} events/s ({projected:.1f}s)")
    client.drop_database(db.name)
    client.close()
    ledger.close()


def lag(command: str, query: str, rate: float, seconds: float, writers: int) -> None:
    run = uuid.uuid4().hex[:8]
    http = requests.Session()
    pairs = []
    for n in range(writers):
        a, b = f"lag-{run}-{n}-a", f"lag-{run}-{n}-b"
        for account in (a, b):
            http.post(f"{command}/v1/accounts", json={"id": account, "asset": "USD/2"}).raise_for_status()
        http.post(
            f"{command}/v1/deposits", json={"id": f"{a}-f", "account": a, "amount": "1000000.00"}
        ).raise_for_status()
        pairs.append((a, b))
    interval = writers / rate
    stop = time.monotonic() + seconds
    lags: list[float] = []
    done = [0]
    lock = threading.Lock()

    def writer(n: int) -> None:
        a, b = pairs[n]
        session = requests.Session()
        next_at = time.monotonic() + n * interval / writers
        i = 0
        while time.monotonic() < stop:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            reply = session.post(
                f"{command}/v1/transfers",
                json={"id": f"{a}-{i}", "debit_account": a, "credit_account": b, "amount": "0.01"},
            )
            committed = time.monotonic()
            i += 1
            with lock:
                done[0] += 1
            if i % 10 == 0:
                position = reply.json()["position"]
                while session.get(f"{query}/v1/accounts/{b}", params={"min_position": position}).status_code != 200:
                    pass
                with lock:
                    lags.append(time.monotonic() - committed)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began
    lags.sort()
    p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] * 1000
    print(f"target {rate:.0f} writes/s, achieved {done[0] / took:.0f} writes/s with {writers} writers")
    print(f"commit to query visibility: p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms (n={len(lags)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", default=".ledger/run/state.json")
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    urls = json.loads(Path(args.state).read_text())["urls"]
    lag(urls["command_api"], urls["query_api"], args.rate, args.seconds, args.writers)
    throughput(urls)


if __name__ == "__main__":
    main()
