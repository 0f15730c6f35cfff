"""A Horizon-compatible SIMULATOR of the Stellar network, for offline runs and tests.

No Stellar network is reachable where the ledger is developed and tested, so the chain
worker talks to this instead (``ledger up`` runs it unless ``LEDGER_HORIZON_URL`` names a
real Horizon). It is not Stellar: one process, state in memory, a ledger closing every
``close_seconds``. What it does check is what a payout can trip on: it decodes envelopes
with stellar-sdk, verifies signatures, sequence numbers, time and ledger bounds, keeps
native and issued balances and trustlines, and applies payments all or nothing (a
failed transaction still uses its sequence number and pays its fee, as on Stellar).

Faults are injected through ``POST /_sim/faults`` (simulator-only endpoints live under
``/_sim``): ``applied_then_504``, ``reset_before`` and ``reset_after`` (the connection is
reset before or after the transaction applies), ``bad_seq``, ``no_trust``,
``underfunded`` (forced results, nothing applied but the fee and the sequence for the op
failures), and ``slow`` (applies, then answers after ``delay`` seconds). Each applies to
the next ``count`` submissions.

Two modes (``POST /_sim/modes``) make it answer as a Horizon behind a load balancer with
a lagging node, or with pruned history, would: ``lookup_404`` answers 404 for every
transaction looked up by hash, applied or not (and a resubmitted one gets
``tx_bad_seq``, as stellar-core answers when Horizon has not ingested it), and
``history_pruned`` leaves transactions out of an account's transaction list.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.sim_network import Network, as_horizon_shows
from devstack.sim_types import Rejected

log = logging.getLogger(__name__)


def _problem(status: int, kind: str, title: str, detail: str = "", extras: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {
        "type": f"https://stellar.org/horizon-errors/{kind}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if extras is not None:
        body["extras"] = extras
    return body


class Handler(BaseHTTPRequestHandler):
    network: Network
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("horizon simulator: " + format, *args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/hal+json" if status < 400 else "application/problem+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        """Close the connection with a TCP reset, as a dying proxy would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        net = self.network
        if not parts:
            return self._send(200, net.root())
        if parts[0] == "accounts" and len(parts) == 2:
            record = net.account_record(parts[1])
            if record is None:
                return self._send(404, _problem(404, "not_found", "Resource Missing"))
            return self._send(200, record)
        if parts[0] == "accounts" and len(parts) == 3 and parts[2] == "payments":
            cursor = int(query.get("cursor") or 0) if query.get("cursor", "") != "now" else len(net.payments)
            limit = min(int(query.get("limit") or 10), 200)
            records = net.payments_of(parts[1], cursor, limit, query.get("join") == "transactions")
            return self._send(200, {"_links": {}, "_embedded": {"records": records}})
        if parts[0] == "accounts" and len(parts) == 3 and parts[2] == "transactions":
            cursor = query.get("cursor")
            limit = min(int(query.get("limit") or 10), 200)
            records = net.transactions_of(
                parts[1], int(cursor) if cursor else None, limit, query.get("order") == "desc"
            )
            return self._send(200, {"_links": {}, "_embedded": {"records": records}})
        if parts[0] == "transactions" and len(parts) == 2:
            record = net.transaction(parts[1])
            if record is None:
                return self._send(404, _problem(404, "not_found", "Resource Missing"))
            return self._send(200, record)
        if parts == ["_sim", "state"]:
            with net.lock:
                return self._send(
                    200,
                    {
                        "ledger": net.ledger(),
                        "submissions": net.submissions,
                        "transactions": len(net.transactions),
                        "payments": net.payments,
                    },
                )
        return self._send(404, _problem(404, "not_found", "Resource Missing"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        raw = self._body()
        net = self.network
        try:
            if path == "/transactions":
                return self._submit(parse_qs(raw.decode()).get("tx", [""])[-1])
            body = json.loads(raw or b"{}")
            if path == "/_sim/accounts":
                account = net.create_account(body["account_id"], body.get("xlm", "10000"))
                return self._send(200, net.account_record(account.account_id))
            if path == "/_sim/trustlines":
                net.trust(body["account_id"], body["asset"])
                return self._send(200, net.account_record(body["account_id"]))
            if path == "/_sim/fund":
                net.fund(body["account_id"], body["asset"], body["amount"])
                return self._send(200, net.account_record(body["account_id"]))
            if path == "/_sim/faults":
                net.inject(body["kind"], int(body.get("count", 1)), float(body.get("delay", 0)))
                return self._send(200, {"faults": [vars(f) for f in net.faults]})
            if path == "/_sim/modes":
                net.set_modes({str(k): bool(v) for k, v in body.items()})
                return self._send(200, {"modes": sorted(net.modes)})
        except (KeyError, ValueError, Rejected) as exc:
            return self._send(400, _problem(400, "bad_request", "Bad Request", str(exc)))
        return self._send(404, _problem(404, "not_found", "Resource Missing"))

    def _submit(self, envelope_xdr: str) -> None:
        net = self.network
        fault = net.next_fault()
        kind = fault.kind if fault else None
        if kind == "reset_before":
            return self._reset()
        try:
            record = net.submit(envelope_xdr, forced=kind if kind in ("bad_seq", "no_trust", "underfunded") else None)
        except Rejected as rejected:
            extras = {
                "envelope_xdr": envelope_xdr,
                "result_codes": {"transaction": rejected.tx_code, "operations": rejected.op_codes},
                "result_xdr": "",
            }
            return self._send(400, _problem(400, "transaction_failed", "Transaction Failed", rejected.detail, extras))
        if kind == "reset_after":
            return self._reset()
        if kind == "applied_then_504":
            return self._send(504, _problem(504, "timeout", "Timeout", "the transaction may still apply"))
        if kind == "slow" and fault is not None:
            time.sleep(fault.delay)
        self._send(200, as_horizon_shows(record))


class Simulator:
    """The simulator served on a port, in threads of the calling process."""

    def __init__(self, host: str, port: int, passphrase: str, close_seconds: float = 1.0) -> None:
        self.network = Network(passphrase, close_seconds)
        handler = type("BoundHandler", (Handler,), {"network": self.network})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="horizon-sim", daemon=True)

    def start(self) -> Simulator:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
