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
import http.client
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymongo

from commands.application import Books
from commands.event_store import event_store_env
from contracts.readmodel import watermark
from projectors.projector import Projector
from projectors.relay import Relay, RelayState
from projectors.store_head import StoreHead
from runtime import kafka
from runtime.settings import Settings


def throughput(data_dir: Path) -> None:
    """Replay throughput; the stack's servers are found as the CLI finds them (with passwords)."""
    settings = Settings.from_env({"LEDGER_DATA_DIR": str(data_dir)}, discover=True)
    urls = {name: str(getattr(settings, name)) for name in ("database_url", "kafka_bootstrap", "mongo_url")}
    books = Books(event_store_env(settings))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    relay = Relay(
        books,
        RelayState(urls["database_url"], topic),
        urls["database_url"],
        kafka.producer(urls["kafka_bootstrap"]),
        kafka.TopicWatch(urls["kafka_bootstrap"], topic, 4),
    )
    relay.start()
    head = books.head_position()
    started = time.monotonic()
    while relay.publish_batch():
        pass
    relayed = time.monotonic() - started
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(urls["mongo_url"])
    db = client[f"bench_{uuid.uuid4().hex[:8]}"]
    store_head = StoreHead(urls["database_url"])
    projector = Projector(
        db,
        kafka.consumer(urls["kafka_bootstrap"], topic),
        kafka.TopicWatch(urls["kafka_bootstrap"], topic, 4),
        store_head=store_head,
    )
    projector.start()
    started = time.monotonic()
    while watermark(db) < head:
        projector.process_batch(0.2)
    projected = time.monotonic() - started
    with books.recorder.datastore.transaction(commit=False) as curs:  # type: ignore[attr-defined]
        curs.execute("SELECT count(*) AS n FROM ledger_events")
        count = int(curs.fetchone()["n"])
    print(f"events in the store: {count}")
    print(f"relay:     {count / relayed:8.0f} events/s ({relayed:.1f}s)")
    print(f"projector: {count / projected:8.0f} events/s ({projected:.1f}s)")
    client.drop_database(db.name)
    client.close()
    store_head.close()
    books.close()


class Client:
    """A keep-alive HTTP/1.1 connection with JSON in and out; cheaper per request than
    requests.Session, so the load generator takes less of the CPU it shares with the stack."""

    token = ""  # the bearer key, set once from the data directory

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload else {}
        headers["Authorization"] = f"Bearer {self.token}"
        self.connection.request(method, path, body=payload, headers=headers)
        reply = self.connection.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")


def lag(command: str, query: str, rate: float, seconds: float, writers: int, batch: int) -> None:
    """Writers send transfers on a fixed schedule (open loop: a slow reply does not lower
    the offered rate until every writer is busy); an observer samples the newest write
    every 20 ms and asks the query API for it with ``min_position`` (the server waits).

    With ``batch`` > 1 each request carries that many transfers (POST /v1/transfer-batches);
    the rate counts transfers either way."""
    run = uuid.uuid4().hex[:8]
    setup = Client(command)
    pairs = []
    for n in range(writers):
        a, b = f"lag-{run}-{n}-a", f"lag-{run}-{n}-b"
        for account in (a, b):
            assert setup.call("POST", "/v1/accounts", {"id": account, "asset": "USD/2"})[0] == 201
        assert setup.call("POST", "/v1/deposits", {"id": f"{a}-f", "account": a, "amount": "1000000.00"})[0] == 201
        pairs.append((a, b))
    interval = writers * batch / rate  # seconds between one writer's requests
    began = time.monotonic()
    stop = began + seconds
    lags: list[float] = []
    latencies: list[float] = []
    done = [0]
    newest: list[tuple[int, float, str] | None] = [None]
    lock = threading.Lock()

    def writer(n: int) -> None:
        a, b = pairs[n]
        client = Client(command)
        next_at = began + n * interval / writers
        i = 0
        while next_at < stop and time.monotonic() < stop:
            time.sleep(max(0.0, next_at - time.monotonic()))
            sent = time.monotonic()
            transfers = [
                {"id": f"{a}-{i + k}", "debit_account": a, "credit_account": b, "amount": "0.01"} for k in range(batch)
            ]
            if batch == 1:
                status, reply = client.call("POST", "/v1/transfers", transfers[0])
                ok, position = status == 201, reply.get("position", 0)
            else:
                status, reply = client.call("POST", "/v1/transfer-batches", {"transfers": transfers})
                results = reply.get("results", [])
                ok = status == 200 and all(r["status"] == 201 for r in results)
                position = max((r["body"]["position"] for r in results), default=0)
            committed = time.monotonic()
            assert ok, reply
            next_at += interval
            i += batch
            with lock:
                done[0] += batch
                latencies.append(committed - sent)
                newest[0] = (position, committed, b)

    def observer() -> None:
        client = Client(query)
        while time.monotonic() < stop:
            time.sleep(0.02)
            with lock:
                sample = newest[0]
            if sample is None:
                continue
            position, committed, account = sample
            status, _ = client.call("GET", f"/v1/accounts/{account}?min_position={position}")
            if status == 200:
                lags.append(time.monotonic() - committed)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    threads.append(threading.Thread(target=observer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began

    def p(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    print(
        f"target {rate:.0f} transfers/s, achieved {done[0] / took:.0f} transfers/s "
        f"({done[0]} in {took:.1f}s; {writers} writers, {batch} per request)"
    )
    print(f"request latency: p50 {p(latencies, 0.5):.0f} ms, p99 {p(latencies, 0.99):.0f} ms")
    print(f"commit to query visibility: p50 {p(lags, 0.5):.0f} ms, p99 {p(lags, 0.99):.0f} ms (n={len(lags)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", default=".ledger/run/state.json")
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1, help="transfers per request (POST /v1/transfer-batches)")
    parser.add_argument("--lag-only", action="store_true", help="skip the replay throughput part")
    args = parser.parse_args()
    urls = json.loads(Path(args.state).read_text())["urls"]
    Client.token = (Path(args.state).parent.parent / "admin.key").read_text().strip()
    lag(urls["command_api"], urls["query_api"], args.rate, args.seconds, args.writers, args.batch)
    if not args.lag_only:
        throughput(Path(args.state).parent.parent)


if __name__ == "__main__":
    main()
