"""The Horizon simulator's chain state: accounts, applied transactions and payments, the
ledger clock, and how a submitted envelope is checked and applied (kept apart from the HTTP front).
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from stellar_sdk import Asset, Keypair, TransactionEnvelope
from stellar_sdk.exceptions import BadSignatureError
from stellar_sdk.operation import Payment

from devstack.sim_types import (
    BASE_FEE,
    FAULTS,
    MODES,
    NATIVE,
    Fault,
    Rejected,
    SimAccount,
    asset_key,
    from_stroops,
    to_stroops,
)


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
            return None if record is None else as_horizon_shows(record)

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
                    found.append(as_horizon_shows(record))
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
                        record["transaction"] = as_horizon_shows(self.transactions[payment["transaction_hash"]])
                    found.append(record)
                    if len(found) >= limit:
                        break
            return found


def as_horizon_shows(record: dict[str, Any]) -> dict[str, Any]:
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
