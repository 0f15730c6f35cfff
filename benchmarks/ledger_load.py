"""Load on a running ledger's command API, for ``write_ratio.py`` and ``cpu_budget.py``.

The load generator shares a 2-core machine with the stack it measures, so it is kept
cheap: one thread per client, each with its own keep-alive ``http.client`` connection and
pre-encoded headers, bodies made with orjson, no locks on the hot path (each thread keeps
its own figures; they are merged at the end). Its own CPU time is measured and reported,
so a reader can see what it took from the stack.

Every transfer is authenticated (the stack's admin key, as a bearer token) and durable
(the command API answers after its commit). Transfers move 0.01 between 50 accounts
funded for the run; every id is new (the run's random prefix), so nothing is a replay.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from runtime.settings import STATE_FILE, running_stack

ACCOUNTS = 50
FUNDS = "1000000000.00"  # per account; 0.01 a transfer never runs one dry in a benchmark
AMOUNT = "0.01"


class StackNotFound(RuntimeError):
    """No running stack where we looked, and no URL given."""


@dataclass(frozen=True)
class Stack:
    """Where the ledger under test answers, and with which key."""

    command: str
    query: str | None
    token: str
    data_dir: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def database_url(self) -> str | None:
        """The stack's database (with its password) when it is a `ledger up` in ``data_dir``."""
        if self.data_dir is None:
            return None
        return running_stack(self.data_dir).get("database_url")


def find_stack(data_dir: Path, command: str | None = None, query: str | None = None, token: str | None = None) -> Stack:
    """The running `ledger up` on ``data_dir`` (its state file names its URLs, its data
    directory keeps the admin key), with any of them overridden by what is given. A
    ``command`` URL other than that stack's means another ledger: nothing of the local
    stack (key, processes, database) is taken for it."""
    live = bool(running_stack(data_dir))
    state: dict[str, Any] = json.loads((data_dir / STATE_FILE).read_text()) if live else {}
    if command is not None and command.rstrip("/") != state.get("urls", {}).get("command_api"):
        live, state = False, {}
    urls = state.get("urls", {})
    command = command or urls.get("command_api")
    query = query or urls.get("query_api")
    if token is None and live:
        token = Path(state.get("admin_key_file") or data_dir / "admin.key").read_text().strip()
    if not command or not token:
        raise StackNotFound(
            f"no running `ledger up` with data in {data_dir} (start one with `make run`), "
            "and not both --command and --token given"
        )
    return Stack(command.rstrip("/"), query.rstrip("/") if query else None, token, data_dir if live else None, state)


class Connection:
    """One keep-alive HTTP/1.1 connection; a failure answers status 0 and reconnects on the
    next request. A connection idle for longer than the server keeps it (5 s) is reopened
    before use rather than found closed halfway through a request."""

    IDLE_SECONDS = 4.0

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.http = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.last_used = 0.0

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        now = time.monotonic()
        if now - self.last_used > self.IDLE_SECONDS:
            self.http.close()
        try:
            self.http.request(method, path, body, self.headers)
            reply = self.http.getresponse()
            status, data = reply.status, reply.read()
        except (OSError, http.client.HTTPException):
            self.http.close()
            status, data = 0, b""
        self.last_used = time.monotonic()
        return status, data

    def close(self) -> None:
        self.http.close()


def open_accounts(stack: Stack, run: str, count: int = ACCOUNTS) -> list[str]:
    """``count`` new USD/2 accounts, each funded by a deposit, four requests at a time."""
    names = [f"bench-{run}-{n}" for n in range(count)]

    def one(name: str) -> None:
        conn = Connection(stack.command, stack.token)
        try:
            for path, body in (
                ("/v1/accounts", {"id": name, "asset": "USD/2"}),
                ("/v1/deposits", {"id": f"{name}-fund", "account": name, "amount": FUNDS}),
            ):
                status, data = conn.request("POST", path, orjson.dumps(body))
                if status != 201:
                    raise RuntimeError(f"POST {path} answered {status}: {data[:300]!r}")
        finally:
            conn.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, names))
    return names


@dataclass(frozen=True)
class Load:
    """One row of the ratio table: ``clients`` senders, each sending as fast as answered."""

    key: str  # its name on the command line
    title: str  # its name in the table
    clients: int
    hot: bool = False  # every transfer from one account
    batch: int = 0  # transfers per POST /v1/transfer-batches; 0: one POST /v1/transfers each


class Transfers:
    """The bodies one client sends: random distinct pairs (``hot``: always from the first
    account), ids unique to the run, client and sequence."""

    def __init__(self, accounts: list[str], prefix: str, *, hot: bool = False, seed: int | None = None) -> None:
        if len(accounts) < 2:
            raise ValueError("transfers need two accounts")
        self.accounts, self.prefix, self.hot = accounts, prefix, hot
        self.random = random.Random(seed)
        self.sequence = 0

    def one(self) -> dict[str, str]:
        n = len(self.accounts)
        debit = 0 if self.hot else self.random.randrange(n)
        credit = (debit + 1 + self.random.randrange(n - 1)) % n
        self.sequence += 1
        return {
            "id": f"{self.prefix}-{self.sequence}",
            "debit_account": self.accounts[debit],
            "credit_account": self.accounts[credit],
            "amount": AMOUNT,
        }

    def request(self, batch: int) -> tuple[str, bytes, int]:
        """Path, body and the number of transfers it carries."""
        if batch:
            return "/v1/transfer-batches", orjson.dumps({"transfers": [self.one() for _ in range(batch)]}), batch
        return "/v1/transfers", orjson.dumps(self.one()), 1


@dataclass
class Tally:
    """One client's figures (kept per thread, merged at the end)."""

    latencies: list[float] = field(default_factory=list)  # seconds per request
    statuses: Counter[int] = field(default_factory=Counter)  # per transfer (0: no answer)
    position: int = 0  # the highest event-store position a write answered
    sent: int = 0  # transfers sent so far (read by the progress line while the thread runs)
    in_window: int = 0  # transfers answered 2xx before the load's end

    def record(self, status: int, data: bytes, transfers: int, seconds: float, *, batch: bool, late: bool) -> None:
        """One answered request; ``late``: answered after the load's end (counted, not in the rate)."""
        self.latencies.append(seconds)
        self.sent += transfers
        ok = 0
        if batch and status == 200:
            for result in orjson.loads(data)["results"]:
                self.statuses[result["status"]] += 1
                if result["status"] == 201:
                    ok += 1
                    self.position = max(self.position, int(result["body"]["position"]))
        else:
            self.statuses[status] += transfers
            if 200 <= status < 300:
                ok = transfers
                self.position = max(self.position, int(orjson.loads(data)["position"]))
        if not late:
            self.in_window += ok


@dataclass(frozen=True)
class Outcome:
    """What a load achieved. The rate counts the transfers answered 2xx within the load's
    ``window``; requests still in flight then are awaited (``seconds`` ends when the last
    is answered) and counted everywhere else, latencies included."""

    window: float
    seconds: float
    requests: int
    in_window: int  # answered 2xx before the window ended
    transfers: int  # answered 2xx
    refused: int  # answered otherwise, or not at all
    statuses: dict[int, int]
    p50_ms: float
    p99_ms: float
    position: int
    client_cpu_seconds: float  # the load generator's own CPU time (all its threads)

    @property
    def rate(self) -> float:
        """Transfers answered 2xx per second of the window."""
        return self.in_window / self.window if self.window > 0 else 0.0

    @classmethod
    def merge(cls, tallies: list[Tally], window: float, seconds: float, client_cpu: float) -> Outcome:
        latencies = sorted(x for t in tallies for x in t.latencies)
        statuses: Counter[int] = Counter()
        for tally in tallies:
            statuses.update(tally.statuses)
        ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
        return cls(
            window=window,
            seconds=seconds,
            requests=len(latencies),
            in_window=sum(t.in_window for t in tallies),
            transfers=ok,
            refused=sum(statuses.values()) - ok,
            statuses=dict(sorted(statuses.items())),
            p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            position=max((t.position for t in tallies), default=0),
            client_cpu_seconds=client_cpu,
        )


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def _drive(
    stack: Stack,
    senders: int,
    seconds: float,
    make: Callable[[int], Transfers],
    batch: int,
    pace: Callable[[int, float], Iterator[float]] | None,
    progress: Callable[[float, int], None] | None,
) -> Outcome:
    """Run ``senders`` threads for ``seconds``; each sends when ``pace`` says (a deadline
    per request) or, without it, as soon as its previous request was answered."""
    tallies = [Tally() for _ in range(senders)]
    began = time.monotonic()
    stop = began + seconds
    cpu_before = time.process_time()

    def sender(n: int) -> None:
        conn = Connection(stack.command, stack.token)
        transfers, tally = make(n), tallies[n]
        schedule = pace(n, began) if pace else None
        try:
            while True:
                if schedule is not None:
                    due = next(schedule)
                    if due >= stop:
                        return
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                elif time.monotonic() >= stop:
                    return
                path, body, count = transfers.request(batch)
                sent = time.monotonic()
                status, data = conn.request("POST", path, body)
                answered = time.monotonic()
                tally.record(status, data, count, answered - sent, batch=batch > 0, late=answered > stop)
        finally:
            conn.close()

    threads = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(senders)]
    for thread in threads:
        thread.start()
    while alive := [thread for thread in threads if thread.is_alive()]:
        alive[0].join(timeout=5.0)
        if progress is not None and alive[0].is_alive():
            progress(time.monotonic() - began, sum(t.sent for t in tallies))
    return Outcome.merge(tallies, seconds, time.monotonic() - began, time.process_time() - cpu_before)


def run_closed(
    stack: Stack,
    load: Load,
    accounts: list[str],
    seconds: float,
    prefix: str,
    progress: Callable[[float, int], None] | None = None,
) -> Outcome:
    """``load.clients`` clients, each sending its next request as soon as the previous one
    is answered (a closed loop: the rate is what the ledger sustains)."""

    def make(n: int) -> Transfers:
        return Transfers(accounts, f"{prefix}-{n}", hot=load.hot)

    return _drive(stack, load.clients, seconds, make, load.batch, None, progress)


def run_paced(
    stack: Stack,
    accounts: list[str],
    rate: float,
    seconds: float,
    prefix: str,
    senders: int = 4,
    progress: Callable[[float, int], None] | None = None,
    batch: int = 0,
) -> Outcome:
    """``rate`` transfers a second in all (single ones, or requests of ``batch``), from
    ``senders`` threads on a fixed schedule (an open loop, staggered). A sender that falls
    behind does not burst to catch up: it sends at once and keeps its interval from there,
    so the rate reached says whether the stack kept up."""
    if rate <= 0:
        raise ValueError("the rate must be more than 0")
    interval = senders * max(batch, 1) / rate

    def pace(n: int, began: float) -> Iterator[float]:
        due = began + n * interval / senders
        while True:
            yield due
            due = max(due + interval, time.monotonic())

    def make(n: int) -> Transfers:
        return Transfers(accounts, f"{prefix}-{n}")

    return _drive(stack, senders, seconds, make, batch, pace, progress)


def wait_visible(stack: Stack, position: int, timeout: float = 60.0) -> float | None:
    """Seconds until the read model (``GET /v1/status`` of the query API) reached
    ``position``, or None if it did not within ``timeout`` (or there is no query API)."""
    if stack.query is None or position <= 0:
        return 0.0 if position <= 0 else None
    conn = Connection(stack.query, stack.token)
    began = time.monotonic()
    try:
        while time.monotonic() - began < timeout:
            status, data = conn.request("GET", "/v1/status")
            if status == 200 and int(orjson.loads(data).get("read_model_position") or 0) >= position:
                return time.monotonic() - began
            time.sleep(0.1)
    finally:
        conn.close()
    return None


def run_id() -> str:
    """A short random prefix that makes every id of this run new to the ledger."""
    return uuid.uuid4().hex[:10]


def say(*parts: object) -> None:
    """Progress goes to stderr, so stdout holds only the results."""
    print(*parts, file=sys.stderr, flush=True)


def write_json(document: dict[str, Any], target: str) -> None:
    """``--json``: the figures for other tools, to stdout (``-``) or a file."""
    text = json.dumps(document, indent=2)
    if target == "-":
        print(text)
    else:
        Path(target).write_text(text + "\n")
