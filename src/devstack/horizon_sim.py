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
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stellar_sdk import Asset, Keypair, TransactionEnvelope
from stellar_sdk.exceptions import BadSignatureError
from stellar_sdk.operation import Payment

log = logging.getLogger(__name__)

STROOPS = 10_000_000
BASE_FEE = 100
NATIVE = "native"
FAULTS = ("applied_then_504", "reset_before", "reset_after", "bad_seq", "no_trust", "underfunded", "slow")
MODES = ("lookup_404", "history_pruned")


def asset_key(asset: Asset) -> str:
    return NATIVE if asset.is_native() else f"{asset.code}:{asset.issuer}"


def to_stroops(amount: str) -> int:
    value = Decimal(amount) * STROOPS
    if value != value.to_integral_value():
        raise ValueError(f"{amount} has more than 7 decimals")
    return int(value)


def from_stroops(stroops: int) -> str:
    return f"{Decimal(stroops) / STROOPS:.7f}"


@dataclass
class SimAccount:
    account_id: str
    sequence: int
    balances: dict[str, int] = field(default_factory=dict)  # asset key -> stroops; a key is a trustline


@dataclass
class Fault:
    kind: str
    count: int
    delay: float = 0.0


class Rejected(Exception):
    """A submission refused (HTTP 400 with result codes)."""

    def __init__(self, tx_code: str, op_codes: list[str] | None = None, detail: str = "") -> None:
        super().__init__(tx_code)
        self.tx_code = tx_code
        self.op_codes = op_codes or []
        self.detail = detail


class Network:
    """The simulated chain: accounts, applied transactions, payments, the ledger clock."""

    def __init__(self, passphrase: str, close_seconds: float = 1.0, first_ledger: int | None = None) -> None:
        self.passphrase = passphrase
        self.close_seconds = close_seconds
        # Random by default: payment ids start with the ledger number, and two simulators
        # (one after another against one event store) must not give the same ids, as
        # Stellar never does (a deposit is credited once per payment id).
        self.first_ledger = first_ledger if first_ledger is not None else 1000 + secrets.randbelow(10**8)
        self.started = time.time()
        self.lock = threading.RLock()
        self.accounts: dict[str, SimAccount] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.payments: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.modes: set[str] = set()
        self.submissions = 0

    # The ledger clock ---------------------------------------------------------------

    def ledger(self) -> int:
        return self.first_ledger + int((time.time() - self.started) / self.close_seconds)

    def close_time(self, ledger: int) -> int:
        return int(self.started + (ledger - self.first_ledger) * self.close_seconds)

    def root(self) -> dict[str, Any]:
        ledger = self.ledger()
        closed_at = datetime.fromtimestamp(self.close_time(ledger), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "simulator": True,
            "horizon_version": "ledger-horizon-simulator",
            "network_passphrase": self.passphrase,
            "history_latest_ledger": ledger,
            "history_latest_ledger_closed_at": closed_at,
            "core_latest_ledger": ledger,
        }

    # Set-up (simulator only) --------------------------------------------------------

    def create_account(self, account_id: str, xlm: str = "10000") -> SimAccount:
        """Open an account with ``xlm`` (nothing happens to one that exists)."""
        with self.lock:
            account = self.accounts.get(account_id)
            if account is None:
                # As on Stellar, a new account's sequence is its creation ledger shifted left 32 bits.
                sequence = self.ledger() << 32
                account = self.accounts[account_id] = SimAccount(account_id, sequence, {NATIVE: to_stroops(xlm)})
            return account

    def trust(self, account_id: str, asset: str) -> None:
        with self.lock:
            self._account(account_id).balances.setdefault(asset, 0)

    def fund(self, account_id: str, asset: str, amount: str) -> None:
        with self.lock:
            balances = self._account(account_id).balances
            if asset not in balances:
                raise Rejected("tx_failed", ["op_no_trust"])
            balances[asset] += to_stroops(amount)

    def inject(self, kind: str, count: int = 1, delay: float = 0.0) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        with self.lock:
            self.faults.append(Fault(kind, count, delay))

    def set_modes(self, modes: dict[str, bool]) -> None:
        unknown = set(modes) - set(MODES)
        if unknown:
            raise ValueError(f"unknown mode {min(unknown)!r}; one of {', '.join(MODES)}")
        with self.lock:
            self.modes |= {m for m, on in modes.items() if on}
            self.modes -= {m for m, on in modes.items() if not on}

    def next_fault(self) -> Fault | None:
        with self.lock:
            self.submissions += 1
            if not self.faults:
                return None
            fault = self.faults[0]
            fault.count -= 1
            if fault.count <= 0:
                self.faults.pop(0)
            return fault

    def _account(self, account_id: str) -> SimAccount:
        account = self.accounts.get(account_id)
        if account is None:
            raise Rejected("tx_failed", ["op_no_destination"], f"account {account_id} does not exist")
        return account

    # Transactions ----------------------------------------------------------------------

    def submit(self, envelope_xdr: str, forced: str | None = None) -> dict[str, Any]:
        """Apply a transaction envelope; returns the transaction record or raises Rejected."""
        try:
            envelope = TransactionEnvelope.from_xdr(envelope_xdr, self.passphrase)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a malformed envelope
            raise Rejected("tx_malformed", detail=str(exc)) from None
        tx = envelope.transaction
        tx_hash = envelope.hash_hex()
        with self.lock:
            if tx_hash in self.transactions and "lookup_404" in self.modes:
                raise Rejected("tx_bad_seq", detail="stellar-core: the sequence number is used")
            if tx_hash in self.transactions:  # Horizon answers an included transaction from history
                record = self.transactions[tx_hash]
                if not record["successful"]:
                    raise Rejected("tx_failed", record["op_codes"])
                return record
            ledger = self.ledger()
            now = self.close_time(ledger)
            source = self.accounts.get(tx.source.account_id)
            if source is None:
                raise Rejected("tx_no_source_account")
            bounds = tx.preconditions
            if bounds and bounds.time_bounds:
                if now < bounds.time_bounds.min_time:
                    raise Rejected("tx_too_early")
                if bounds.time_bounds.max_time and now > bounds.time_bounds.max_time:
                    raise Rejected("tx_too_late")
            if bounds and bounds.ledger_bounds:
                if ledger < bounds.ledger_bounds.min_ledger:
                    raise Rejected("tx_too_early")
                if bounds.ledger_bounds.max_ledger and ledger >= bounds.ledger_bounds.max_ledger:
                    raise Rejected("tx_too_late")
            if forced == "bad_seq" or tx.sequence != source.sequence + 1:
                raise Rejected("tx_bad_seq", detail=f"expected {source.sequence + 1}, got {tx.sequence}")
            signers = {tx.source.account_id} | {op.source.account_id for op in tx.operations if op.source}
            if not all(self._signed_by(envelope, signer) for signer in signers):
                raise Rejected("tx_bad_auth")
            fee = BASE_FEE * len(tx.operations)
            if tx.fee < fee:
                raise Rejected("tx_insufficient_fee")
            if source.balances.get(NATIVE, 0) < fee:
                raise Rejected("tx_insufficient_balance")
            # From here the transaction is in the ledger: sequence used, fee paid.
            source.sequence = tx.sequence
            source.balances[NATIVE] -= fee
            op_codes = self._apply(tx_hash, tx, ledger, forced)
            memo = tx.memo.memo_text.decode() if hasattr(tx.memo, "memo_text") else None
            record = {
                "id": tx_hash,
                "hash": tx_hash,
                "paging_token": str(len(self.transactions) + 1),
                "ledger": ledger,
                "successful": not op_codes,
                "source_account": tx.source.account_id,
                "source_account_sequence": str(tx.sequence),
                "fee_charged": str(fee),
                "operation_count": len(tx.operations),
                "envelope_xdr": envelope_xdr,
                "result_xdr": "",
                "memo_type": "text" if memo is not None else "none",
                "memo": memo,
                "created_at": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "op_codes": op_codes,
                "participants": _participants(tx),
            }
            self.transactions[tx_hash] = record
            if op_codes:
                raise Rejected("tx_failed", op_codes)
            return record

    def _signed_by(self, envelope: TransactionEnvelope, account_id: str) -> bool:
        signer = Keypair.from_public_key(account_id)
        for signature in envelope.signatures:
            if signature.signature_hint != signer.signature_hint():
                continue
            try:
                signer.verify(envelope.hash(), signature.signature)
                return True
            except BadSignatureError:
                continue
        return False

    def _apply(self, tx_hash: str, tx: Any, ledger: int, forced: str | None) -> list[str]:
        """Every operation or none; returns the operations' failure codes ([] on success)."""
        staged = {k: dict(v.balances) for k, v in self.accounts.items()}
        payments = []
        codes = []
        failed = False
        for index, op in enumerate(tx.operations):
            code = "op_success"
            if not isinstance(op, Payment):
                code = "op_not_supported"
            else:
                source_id = op.source.account_id if op.source else tx.source.account_id
                destination_id = op.destination.account_id
                key = asset_key(op.asset)
                amount = to_stroops(op.amount)
                issuer = not op.asset.is_native() and op.asset.issuer == source_id
                if forced in ("no_trust", "underfunded"):
                    code = f"op_{forced}"
                elif source_id not in staged:
                    code = "op_src_not_authorized"
                elif destination_id not in staged:
                    code = "op_no_destination"
                elif key not in staged[destination_id] and not (
                    not op.asset.is_native() and op.asset.issuer == destination_id
                ):
                    code = "op_no_trust"
                elif not issuer and key not in staged[source_id]:
                    code = "op_src_no_trust"
                elif not issuer and staged[source_id][key] < amount:
                    code = "op_underfunded"
                else:
                    if not issuer:
                        staged[source_id][key] -= amount
                    if not (not op.asset.is_native() and op.asset.issuer == destination_id):
                        staged[destination_id][key] += amount
                    payments.append((index, source_id, destination_id, op.asset, amount))
            failed = failed or code != "op_success"
            codes.append(code)
        if failed:
            return codes
        for account_id, balances in staged.items():
            self.accounts[account_id].balances = balances
        for index, source_id, destination_id, asset, stroops in payments:
            self.payments.append(
                {
                    "id": f"{ledger}{len(self.payments) + 1:08d}",
                    "paging_token": str(len(self.payments) + 1),
                    "type": "payment",
                    "transaction_hash": tx_hash,
                    "transaction_successful": True,
                    "from": source_id,
                    "to": destination_id,
                    "source_account": source_id,
                    "amount": from_stroops(stroops),  # Horizon shows 7 decimals
                    **_asset_fields(asset),
                    "operation_index": index,
                }
            )
        return []

    # Reads -----------------------------------------------------------------------------

    def account_record(self, account_id: str) -> dict[str, Any] | None:
        with self.lock:
            account = self.accounts.get(account_id)
            if account is None:
                return None
            balances = []
            for key, stroops in account.balances.items():
                if key == NATIVE:
                    balances.append({"asset_type": "native", "balance": from_stroops(stroops)})
                else:
                    code, issuer = key.split(":")
                    balances.append({**_asset_fields(Asset(code, issuer)), "balance": from_stroops(stroops)})
            return {
                "id": account_id,
                "account_id": account_id,
                "sequence": str(account.sequence),
                "balances": balances,
                "data": {},
                "signers": [{"key": account_id, "weight": 1, "type": "ed25519_public_key"}],
                "thresholds": {"low_threshold": 0, "med_threshold": 0, "high_threshold": 0},
            }

    def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        with self.lock:
            record = None if "lookup_404" in self.modes else self.transactions.get(tx_hash)
            return None if record is None else _public(record)

    def transactions_of(self, account_id: str, cursor: int | None, limit: int, desc: bool) -> list[dict[str, Any]]:
        """The transactions an account took part in (as source or in an operation),
        paged by ``paging_token`` like Horizon's ``/accounts/{id}/transactions``."""
        with self.lock:
            if "history_pruned" in self.modes:
                return []
            records = list(self.transactions.values())
            if desc:
                records.reverse()
            found = []
            for record in records:
                token = int(record["paging_token"])
                if cursor is not None and (token >= cursor if desc else token <= cursor):
                    continue
                if account_id in record["participants"]:
                    found.append(_public(record))
                    if len(found) >= limit:
                        break
            return found

    def payments_of(self, account_id: str, cursor: int, limit: int, join: bool) -> list[dict[str, Any]]:
        with self.lock:
            found = []
            for payment in self.payments[cursor:]:
                if account_id in (payment["from"], payment["to"]):
                    record = dict(payment)
                    if join:
                        record["transaction"] = _public(self.transactions[payment["transaction_hash"]])
                    found.append(record)
                    if len(found) >= limit:
                        break
            return found


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A transaction record as Horizon shows it (without the simulator's own fields)."""
    return {k: v for k, v in record.items() if k not in ("op_codes", "participants")}


def _participants(tx: Any) -> set[str]:
    accounts = {tx.source.account_id}
    for op in tx.operations:
        if op.source:
            accounts.add(op.source.account_id)
        if isinstance(op, Payment):
            accounts.add(op.destination.account_id)
    return accounts


def _asset_fields(asset: Asset) -> dict[str, Any]:
    if asset.is_native():
        return {"asset_type": "native"}
    kind = "credit_alphanum4" if len(asset.code) <= 4 else "credit_alphanum12"
    return {"asset_type": kind, "asset_code": asset.code, "asset_issuer": asset.issuer}


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
        self._send(200, _public(record))


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
