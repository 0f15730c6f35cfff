"""Prometheus metrics for every service, and readiness: what each process exposes to
operators (docs/metrics.md says what each metric means and which service has it).

The HTTP APIs run several gunicorn workers, so their metrics use prometheus-client's
multi-process mode: ``runtime.gunicorn_conf`` gives each gunicorn master a fresh
directory (``PROMETHEUS_MULTIPROC_DIR``, set before any worker imports this module) and
marks a dead worker's files; ``GET /metrics`` sums every live worker's. The other
services (relay, projector, chain worker, expirer, sealer) are single processes that
serve ``/metrics``, ``/readyz`` and ``/healthz`` on a port of their own (``serve``).

``/metrics`` needs a key with the ``metrics`` scope (a scraper's key reads nothing
else); ``/readyz`` and ``/healthz`` are open, as probes are.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import falcon
import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import ThreadingWSGIServer

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# HTTP (both APIs and the services' own endpoints)
HTTP_REQUESTS = Counter(
    "ledger_http_requests",
    "Requests answered, by API, route template, method and status",
    ["api", "route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "ledger_http_request_seconds", "Time to answer a request", ["api", "route", "method"], buckets=_LATENCY_BUCKETS
)
# Commands (command API)
COMMANDS = Counter(
    "ledger_commands",
    "Commands by type and outcome: ok, replayed, or the problem code (busy, id_conflict, insufficient_funds, ...)",
    ["command", "outcome"],
)
CONSUMER_ERRORS = Counter("ledger_consumer_errors", "Kafka consumer errors, by service", ["service"])
DEAD_LETTERS = Counter("ledger_dead_letters", "Messages set aside as unreadable or invalid, by service", ["service"])
# Chain worker
PAYOUTS = Counter("ledger_payouts", "Payouts reaching a state: submitted, confirmed, failed, stuck", ["state"])
HORIZON_ERRORS = Counter("ledger_horizon_errors", "Horizon calls that failed, by operation", ["operation"])


# The metrics below have no labels, so they would show (as zeros) in every process that
# imports this module; each is made by the first use in the service it belongs to.


@cache
def write_conflicts() -> Counter:
    return Counter("ledger_write_conflicts", "Group writes run again because another writer saved first")


@cache
def group_size() -> Histogram:
    return Histogram(
        "ledger_group_commit_size", "Commands saved per group commit", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
    )


@cache
def relay_position() -> Gauge:
    return Gauge("ledger_relay_position", "Last event-store position published to Kafka", multiprocess_mode="max")


@cache
def relay_lag() -> Gauge:
    return Gauge("ledger_relay_lag_events", "Events in the store not yet published", multiprocess_mode="max")


@cache
def projector_watermark() -> Gauge:
    return Gauge(
        "ledger_projector_watermark",
        "Every event at or below this position is in the read models",
        multiprocess_mode="max",
    )


@cache
def projector_lag() -> Gauge:
    return Gauge(
        "ledger_projector_lag_events",
        "Events the relay reported in the store and not yet in the read models",
        multiprocess_mode="max",
    )


@cache
def payouts_stuck() -> Gauge:
    return Gauge("ledger_payouts_stuck", "Payouts reported stuck and not resolved (an operator should look)")


@cache
def seal_age() -> Gauge:
    return Gauge("ledger_seal_age_seconds", "Seconds since the store was last known sealed up to its head")


def exposition() -> bytes:
    """Every metric of this process, or of all live workers of this gunicorn master."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class RequestMetrics:
    """Falcon middleware: one count and one latency per request, by route template (never
    the raw path: ids in paths would make a series per account)."""

    def __init__(self, api: str) -> None:
        self.api = api

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool) -> None:
        route = req.uri_template or "unrouted"
        method = req.method if req.method in _METHODS else "other"
        HTTP_REQUESTS.labels(self.api, route, method, str(resp.status_code)).inc()
        started = req.context.get("metrics_started")
        if started is not None:
            HTTP_SECONDS.labels(self.api, route, method).observe(time.perf_counter() - started)


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class MetricsResource:
    scope = "metrics"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = exposition()


Check = Callable[[], None]  # raises (anything) when the dependency cannot be used


class Readiness:
    """``GET /readyz``: 200 when every dependency answers, else 503 naming what is down.

    It needs no key, so it must be cheap whoever asks: one request at a time runs the
    checks (each with its own short timeout), and the answer serves for ``fresh_for``
    seconds. A failure is named by its kind only (``OperationalError``): its message may
    carry hosts and user names."""

    public = True

    def __init__(self, checks: Mapping[str, Check], fresh_for: float = 1.0) -> None:
        self.checks = dict(checks)
        self.fresh_for = fresh_for
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, str]] | None = None

    def _results(self) -> dict[str, str]:
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.fresh_for:
                return self._last[1]
            results = {}
            for name, check in self.checks.items():
                try:
                    check()
                    results[name] = "ok"
                except Exception as exc:  # noqa: BLE001  # any failure means "not ready"
                    results[name] = f"down ({type(exc).__name__})"
            self._last = (time.monotonic(), results)
            return results

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = self._results()
        down = {name: why for name, why in checks.items() if why != "ok"}
        if down:
            detail = "; ".join(f"{name}: {why}" for name, why in down.items())
            raise ReadinessProblem(detail, checks)
        resp.media = {"status": "ready", "checks": checks}


class ReadinessView(msgspec.Struct):
    status: str
    checks: dict[str, str]


class ReadinessProblem(falcon.HTTPError):
    """A 503 problem that also lists every check (``runtime.web`` serializes it)."""

    def __init__(self, detail: str, checks: dict[str, str]) -> None:
        super().__init__(falcon.HTTP_503, description=f"not ready: {detail}", headers={"Retry-After": "5"})
        self.problem_code = "not_ready"
        self.extra = {"checks": checks}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the access log is the app's
        pass


def serve(app: falcon.App, host: str, port: int) -> tuple[Any, str]:
    """Serve ``app`` (a service's /metrics, /readyz, /healthz) from a daemon thread;
    returns the server (``shutdown()`` it) and its URL (port 0 picks a free one)."""
    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    url = f"http://{host}:{server.server_port}"
    log.info("metrics and readiness served", extra={"url": url})
    return server, url


def postgres_check(url: str, timeout: float = 2.0) -> Check:
    """A new connection and ``SELECT 1``: a pool could hand out a connection that is
    already broken, or wait its own timeout for one."""

    def check() -> None:
        import psycopg

        limit = max(int(timeout), 1)
        with psycopg.connect(url, connect_timeout=limit, options=f"-c statement_timeout={limit * 1000}") as conn:
            conn.execute("SELECT 1")

    return check


def mongodb_check(url: str, timeout: float = 2.0) -> Check:
    import pymongo

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=int(timeout * 1000), connectTimeoutMS=int(timeout * 1000), connect=False
    )
    return lambda: client.admin.command("ping")


def kafka_check(admin: Any, timeout: float = 2.0) -> Check:
    """The broker answers a metadata request (``admin``: confluent-kafka's AdminClient)."""

    def check() -> None:
        admin.list_topics(timeout=timeout)

    return check


@cache
def distribution_balance() -> Gauge:
    return Gauge(
        "ledger_chain_distribution_balance", "What the distribution account holds on chain, by asset", ["asset"]
    )


@cache
def distribution_needed() -> Gauge:
    """Below it, the distribution account is reported low (ledger.chain.distribution_low.v1)."""
    return Gauge(
        "ledger_chain_distribution_needed",
        "What payouts not yet on chain will pay, plus the floor kept (LEDGER_CHAIN_LOW_BALANCE), by asset",
        ["asset"],
    )


@cache
def chain_differences() -> Gauge:
    return Gauge(
        "ledger_chain_differences", "Differences between the chain and the books the last reconciliation found"
    )


@cache
def chain_reconciled() -> Gauge:
    return Gauge("ledger_chain_reconciled_timestamp_seconds", "When the last reconciliation ended (Unix time)")
