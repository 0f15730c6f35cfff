"""What the HTTP front costs before the ledger does anything (issue 12's 8-client target).

Serves an app that does nothing a ledger does: it reads the JSON body of
``POST /v1/transfers`` and answers 201 with a small JSON body, no key check, no database.
It runs under the command API's own server set-up (gunicorn with
``runtime.gunicorn_conf``: the ``runtime.web_worker`` worker, the same workers and
threads as `ledger up` gives the command API), driven by the write benchmarks' own load
generator (``ledger_load``: one keep-alive connection and thread per client, the same
transfer bodies). It prints, per load, requests a second, and the CPU milliseconds per
request of the server (master and workers) and of the client:

    .venv/bin/python benchmarks/http_front.py --seconds 10

Why it exists: a ledger request can cost no less than this. On 2 cores, a rate the
server and its client cannot reach with an empty app is out of reach for the ledger over
HTTP whatever the ledger does; ``--compare R`` prints how many cores R requests a second
would take for the front and the client alone (R: the reference's 8-client rate from
``write_ratio.py``). Needs no running stack: it starts its own server on a free port and
stops it by PID.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import falcon
from cpu_budget import cpu_between, snapshot
from ledger_load import Load, Stack, run_closed, run_paced, say, write_json

from devstack.processes import ManagedProcess, ProcessExited, wait_until

HERE = Path(__file__).resolve().parent
SERVER_WORKERS, SERVER_THREADS = "1", "32"  # what the supervisor gives the command API


class Transfer:
    """Reads the body as the command API does (the whole of it, then JSON) and answers."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json.loads(req.bounded_stream.read())
        resp.status = falcon.HTTP_201
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"id": body.get("id"), "status": "posted", "position": 1})


def make_app() -> falcon.App:
    app = falcon.App()
    app.add_route("/v1/transfers", Transfer())
    return app


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def front(port: int, log: Path) -> Iterator[int]:
    """gunicorn serving ``make_app()`` with the project's config; yields its PID."""
    env = dict(os.environ, LEDGER_WEB_WORKERS=SERVER_WORKERS, LEDGER_WEB_THREADS=SERVER_THREADS)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), src, env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:runtime.gunicorn_conf", "--bind", f"127.0.0.1:{port}"]
    server = ManagedProcess("http-front", [*argv, "http_front:make_app()"], env=env, grace_seconds=15, log_file=log)
    server.start()
    try:
        wait_until(lambda: _answers(port, server), 30, "the server (see " + str(log) + ")")
        assert server.pid is not None
        yield server.pid
    finally:
        server.stop()


def _answers(port: int, server: ManagedProcess) -> bool:
    """A worker answers HTTP (the master listens before its worker has booted)."""
    if not server.alive():
        raise ProcessExited(f"the server exited with code {server.poll()}")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="CPU and rate of the command API's HTTP front with an empty app.")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per load (default 10)")
    parser.add_argument("--clients", default="1,8", help="closed-loop client counts (default 1,8)")
    parser.add_argument("--rates", default="300", help="paced rates, 8 senders (default 300; '' for none)")
    parser.add_argument("--compare", type=float, help="a rate to price: cores the front and client need for it")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE (- for stdout)")
    args = parser.parse_args(argv)
    try:
        args.clients = [int(n) for n in args.clients.split(",") if n]
        args.rates = [float(r) for r in args.rates.split(",") if r]
    except ValueError:
        parser.error("--clients and --rates are comma-separated numbers")
    if args.seconds <= 0 or any(n < 1 for n in args.clients) or any(r <= 0 for r in args.rates):
        parser.error("--seconds, every client count and every rate must be more than 0")
    if not args.clients and not args.rates:
        parser.error("nothing to run: give --clients or --rates")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"http-front-{port}.log"
    stack = Stack(f"http://127.0.0.1:{port}", None, "not-checked")
    accounts = [f"front-{n}" for n in range(50)]
    rows = []
    with front(port, log) as pid:
        say(f"gunicorn (runtime.gunicorn_conf, {SERVER_WORKERS} worker x {SERVER_THREADS} threads) pid {pid} on {port}")
        loads = [(f"{n} client{'s' if n > 1 else ''}, closed loop", n, None) for n in args.clients]
        loads += [(f"{rate:g}/s offered, 8 senders", 8, rate) for rate in args.rates]
        for name, clients, rate in loads:
            before = snapshot(pid)
            if rate is None:
                outcome = run_closed(stack, Load(str(clients), name, clients), accounts, args.seconds, "front")
            else:
                outcome = run_paced(stack, accounts, rate, args.seconds, "front", senders=clients)
            server = cpu_between(before, snapshot(pid))
            answered = max(outcome.transfers, 1)
            rows.append(
                {
                    "load": name,
                    "rate": outcome.rate,
                    "statuses": outcome.statuses,
                    "server_ms": server * 1000 / answered,
                    "client_ms": outcome.client_cpu_seconds * 1000 / answered,
                }
            )
            say(f"  {name}: {outcome.rate:,.0f}/s, statuses {outcome.statuses}")
    log.unlink(missing_ok=True)
    print(
        "\n| load (empty app, the command API's server set-up) | requests/s | server CPU ms/request | client CPU ms/request |"
    )
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['load']} | {row['rate']:,.0f} | {row['server_ms']:.3f} | {row['client_ms']:.3f} |")
    if args.compare:
        cheapest = min(rows, key=lambda row: row["server_ms"] + row["client_ms"])
        server_cores = args.compare * cheapest["server_ms"] / 1000
        client_cores = args.compare * cheapest["client_ms"] / 1000
        print(
            f"\nat {args.compare:,.0f} requests/s, at its cheapest per request ({cheapest['load']}), the front alone "
            f"would use {server_cores:.2f} cores and its client {client_cores:.2f}: "
            f"{server_cores + client_cores:.2f} of this machine's {os.cpu_count()}"
        )
    print(f"reproduce: .venv/bin/python benchmarks/http_front.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    if args.json:
        write_json({"rows": rows, "compare": args.compare}, args.json)
    return 0 if all(row["rate"] > 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
