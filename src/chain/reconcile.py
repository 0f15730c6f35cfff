"""Reconciliation: what the chain says the ledger's Stellar accounts did, against the books.

The chain is read from Horizon: every payment the distribution and channel accounts made
or received (failed transactions left out; payments into a channel account, its fee
top-ups, are not the books' business). The books are read from the event store: the
payouts, and each asset's clearing account, which carries every payout's pending
transfer and every chain deposit. The worker's tables add what only they know: which
transactions are envelopes of payouts still in flight, and how far the deposit follower
has read.

The books are read before the chain, so whatever they call confirmed or credited was on
chain before Horizon was asked (a payout in a ledger Horizon has not closed yet waits for
the next run). A payout applied on chain and not yet confirmed in the books is in flight,
not a difference. What has been read is kept: a periodic run reads only what is new.

A payment into the distribution account must be credited once the deposit follower has
passed it: at or before its stored cursor ``deposits:<account>``, read before the books
(the follower credits a payment before it moves the cursor past it).

The clearing account's invariant, per asset: a payout request holds its amount as a
pending credit on it, confirming posts that credit, failing voids it, and a chain deposit
debits it. So its pending credits are the amounts of the payouts in flight, and its
posted credits minus posted debits are what the distribution account paid out on chain
(in flight excepted) minus what it received that the follower has passed or the books
credited. Both sides are counted from payments, never from the balance on chain, which
also holds funding from before the ledger, reserves and fees. The books' side is one
snapshot: payouts are read again until none changed while the clearing accounts were
read. The invariant covers the whole history, so a run with ``since`` skips it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import PersistenceError
from eventsourcing.utils import get_topic
from stellar_sdk import Asset, Server
from stellar_sdk.exceptions import BaseRequestError, NotFoundError

from chain.config import ChainSettings
from chain.deposits import PAYMENT_TYPES
from chain.stellar import chain_amount, horizon_client, stroops_of
from chain.store import ChainStore
from commands.application import Books
from ledger.accounts import Account
from ledger.ids import account_uuid, chain_deposit_id, clearing_account_id
from ledger.payouts import CONFIRMED, Payout
from runtime import metrics

log = logging.getLogger(__name__)

DEPOSIT_PREFIX = chain_deposit_id("")
PAYOUT_TOPICS = [get_topic(c) for c in vars(Payout).values() if isinstance(c, type) and issubclass(c, Aggregate.Event)]
PAGE = 200
Difference = dict[str, Any]
# What stops a run from reading the chain or the books (not a difference: nothing was compared).
UNREADABLE = (BaseRequestError, psycopg.Error, PersistenceError)


def asset_key(asset: Asset) -> str:
    return "native" if asset.is_native() else f"{asset.code}:{asset.issuer}"


def _asset_of(record: dict[str, Any], prefix: str = "") -> str:
    if record.get(f"{prefix}asset_type", "native") == "native":
        return "native"
    return f"{record[f'{prefix}asset_code']}:{record[f'{prefix}asset_issuer']}"


def _created_at(record: dict[str, Any]) -> datetime:
    """Horizon gives an operation's time; the simulator only its transaction's (joined)."""
    return datetime.fromisoformat(record.get("created_at") or record["transaction"]["created_at"])


@dataclass(frozen=True)
class ChainPayment:
    """A payment operation; ``sent`` left the source (a path payment's source amount and
    asset), ``received`` reached the destination; each is (stroops, Stellar asset)."""

    payment_id: str
    token: int
    tx_hash: str
    kind: str
    source: str
    destination: str
    sent: tuple[int, str]
    received: tuple[int, str]
    at: datetime

    @classmethod
    def of(cls, record: dict[str, Any]) -> ChainPayment | None:
        kind = record["type"]
        if kind == "create_account":
            value = (stroops_of(record["starting_balance"]), "native")
            source, destination, sent = record["funder"], record["account"], value
        elif kind in PAYMENT_TYPES:
            value = (stroops_of(record["amount"]), _asset_of(record))
            source, destination, sent = record["from"], record["to"], value
            if "source_amount" in record:
                sent = (stroops_of(record["source_amount"]), _asset_of(record, "source_"))
        else:
            return None
        token, tx_hash = int(record["paging_token"]), record["transaction_hash"]
        return cls(record["id"], token, tx_hash, kind, source, destination, sent, value, _created_at(record))

    def shown(self, side: tuple[int, str]) -> Difference:
        amount, asset = chain_amount(side[0]), side[1]
        where = {"payment": self.payment_id, "tx_hash": self.tx_hash, "from": self.source, "to": self.destination}
        return where | {"amount": amount, "asset": asset, "at": self.at.isoformat()}


@dataclass
class Clearing:
    """One asset's clearing account, folded from its stream, and the chain deposits it paid."""

    account: Account | None = None
    deposits: dict[str, tuple[int, datetime]] = field(default_factory=dict)  # payment id -> amount, when


@dataclass
class Report:
    since: datetime | None
    checked: dict[str, Any]
    differences: list[Difference]

    def as_json(self) -> dict[str, Any]:
        since = self.since.isoformat() if self.since else None
        return {"since": since, "checked": self.checked, "differences": self.differences}


def reconciler_horizon(url: str) -> Server:
    """The reconciliation's Horizon client: it reads whole histories, so it waits longer
    (10 s) and tries a failed read once more."""
    return horizon_client(url, retries=1, timeout=10)


class Reconciler:
    """Reads the books and the chain; one per process, as it keeps what it has read."""

    def __init__(self, settings: ChainSettings, store: ChainStore, books: Books, horizon: Server) -> None:
        self.settings, self.store, self.books = settings, store, books
        self.horizon = horizon
        self.distribution = settings.keys.distribution.public_key
        self.ours = {self.distribution, *(key.public_key for key in settings.keys.channels)}
        self.assets = {asset_key(chain): asset for asset, chain in settings.assets.items()}  # Stellar -> ledger
        self.payments: dict[str, ChainPayment] = {}
        self.others: dict[str, dict[str, Any]] = {}  # operations of ours that move money otherwise (merges)
        self.cursors: dict[str, str] = {}
        self.payouts: dict[UUID, Payout] = {}
        self.position = 1
        self.clearing: dict[str, Clearing] = defaultdict(Clearing)

    def run(self, since: datetime | None = None) -> Report:
        name = f"deposits:{self.distribution}"
        follower = int(self.store.cursors(name).get(name, "0"))
        self._read_payouts()
        for _ in range(10):
            for asset in self.settings.assets:
                self._read_clearing(asset)
            if not self._read_payouts():
                break
        latest = int(self.horizon.root().call()["history_latest_ledger"])
        for account in sorted(self.ours):
            self._read_payments(account)
        return Comparison(self, since).run(follower, latest)

    def _read_payouts(self) -> int:
        """Payout events up to the store's head, which is where the next read starts (the
        table lock every insert takes makes positions visible in order), so a run reads
        only what was written since the last, whatever else the store holds."""
        read, head = 0, self.books.recorder.max_notification_id() or 0
        while self.position <= head:
            notes = self.books.recorder.select_notifications(self.position, PAGE, stop=head, topics=PAYOUT_TOPICS)
            for note in notes:
                event = self.books.mapper.to_domain_event(note)
                self.payouts[event.originator_id] = event.mutate(self.payouts.get(event.originator_id))
            self.position, read = (notes[-1].id + 1 if notes else head + 1), read + len(notes)
        return read

    def _read_clearing(self, asset: str) -> None:
        clearing = self.clearing[asset]
        version = clearing.account.version if clearing.account else None
        for event in self.books.events.get(account_uuid(clearing_account_id(asset)), gt=version):
            clearing.account = event.mutate(clearing.account)
            if isinstance(event, Account.Debited) and event.transfer_id.startswith(DEPOSIT_PREFIX):
                clearing.deposits[event.transfer_id.removeprefix(DEPOSIT_PREFIX)] = (event.amount, event.timestamp)

    def _read_payments(self, account: str) -> None:
        while True:
            call = self.horizon.payments().for_account(account).order(desc=False).limit(PAGE).join("transactions")
            try:
                records = call.cursor(self.cursors.get(account, "0")).call()["_embedded"]["records"]
            except NotFoundError:  # not on chain (yet): nothing to read
                return
            for record in records:
                self.cursors[account] = record["paging_token"]
                if not record.get("transaction_successful", True):
                    continue
                payment = ChainPayment.of(record)
                if payment is not None:
                    self.payments[payment.payment_id] = payment
                elif record.get("source_account") in self.ours:
                    self.others[record["id"]] = record
            if len(records) < PAGE:
                return


class Comparison:
    """One run's comparison of what a Reconciler has read."""

    def __init__(self, reader: Reconciler, since: datetime | None) -> None:
        self.r, self.since = reader, since
        self.differences: list[Difference] = []
        self.checked: Counter[str] = Counter()
        self.payouts = [p for p in reader.payouts.values() if p.asset in reader.settings.assets]
        self.paid_out: Counter[str] = Counter()  # per ledger asset, as the chain says
        self.received: Counter[str] = Counter()

    def recent(self, *moments: datetime) -> bool:
        return self.since is None or any(moment >= self.since for moment in moments)

    def add(self, kind: str, *parts: Difference, **fields: Any) -> None:
        self.differences.append({"kind": kind, **{k: v for part in parts for k, v in part.items()}, **fields})

    def run(self, follower: int, latest: int) -> Report:
        r = self.r
        self._outgoing([p for p in r.payments.values() if p.source in r.ours], latest)
        self._incoming([p for p in r.payments.values() if p.destination == r.distribution], follower)
        for op in r.others.values():
            if self.recent(_created_at(op)):
                found = {"operation": op["id"], "type": op["type"], "tx_hash": op["transaction_hash"]}
                self.add("unexpected_operation", found, source=op["source_account"])
        self._worker_rows()
        checked: dict[str, Any] = {"payments": sum(self.recent(p.at) for p in r.payments.values()), **self.checked}
        checked |= {"accounts": sorted(r.ours), "assets": sorted(r.settings.assets)}
        if self.since is None:
            checked["clearing"] = self._clearing()
        else:
            checked["clearing"] = "skipped: the clearing balance covers the whole history, not a period"
        return Report(self.since, checked, self.differences)

    def _outgoing(self, payments: list[ChainPayment], latest: int) -> None:
        r = self.r
        confirmed: dict[str | None, Payout] = {}
        for payout in (p for p in self.payouts if p.state == CONFIRMED):
            first = confirmed.setdefault(payout.tx_hash, payout)
            if first is not payout and self.recent(payout.modified_on):  # one payment cannot pay two payouts
                self.add("payout_without_chain_payment", _payout_shown(payout), paid_for=first.payout_id)
        hashes = [p.tx_hash for p in payments]
        rows = r.store.conn().execute(
            "SELECT tx_hash, payout_id FROM chain_envelopes WHERE tx_hash = ANY(%s)", (hashes,)
        )
        envelopes = {row["tx_hash"]: row["payout_id"] for row in rows}
        by_id = {p.payout_id: p for p in self.payouts}
        matched: set[str] = set()
        for payment in sorted(payments, key=lambda p: p.token):
            payout = confirmed.get(payment.tx_hash)
            owner = by_id.get(envelopes.get(payment.tx_hash, ""))
            if payout is not None and payment.tx_hash not in matched and payment.source == r.distribution:
                matched.add(payment.tx_hash)
                if self.recent(payment.at, payout.modified_on):
                    self.checked["payouts_confirmed"] += 1
                    self._compare(payout, payment)
            elif payment.tx_hash in envelopes and (owner is None or not owner.resolved):
                self.checked["payouts_in_flight"] += self.recent(payment.at)
                continue  # applied on chain, not yet confirmed in the books (nor paid out by them)
            elif self.recent(payment.at):
                ended = {"payout": owner.payout_id, "payout_state": owner.state} if owner else {}  # ended otherwise
                self.add("chain_payment_without_payout", payment.shown(payment.sent), ended)
            if payment.source == r.distribution:
                self.paid_out[r.assets.get(payment.sent[1], "")] += payment.sent[0]
        for tx_hash, payout in confirmed.items():
            if tx_hash not in matched and (payout.ledger or 0) < latest and self.recent(payout.modified_on):
                self.checked["payouts_confirmed"] += 1
                self.add("payout_without_chain_payment", _payout_shown(payout))

    def _compare(self, payout: Payout, payment: ChainPayment) -> None:
        compared = {
            "amount": (chain_amount(payout.amount), chain_amount(payment.sent[0])),
            "asset": (asset_key(self.r.settings.assets[payout.asset]), payment.sent[1]),
            "destination": (payout.destination, payment.destination),
        }
        pair = {"payout": payout.payout_id, "tx_hash": payment.tx_hash, "payment": payment.payment_id}
        for name, (books, chain) in compared.items():
            if books != chain:
                self.add(f"{name}_mismatch", pair, {f"ledger_{name}": books, f"chain_{name}": chain})

    def _incoming(self, payments: list[ChainPayment], follower: int) -> None:
        seen: set[str] = set()
        for payment in payments:
            asset = self.r.assets.get(payment.received[1])
            if asset is None or payment.kind not in PAYMENT_TYPES:
                continue  # what the follower never credits (the account's own creation, unmapped assets)
            seen.add(payment.payment_id)
            credited = self.r.clearing[asset].deposits.get(payment.payment_id)
            if credited is None and payment.token > follower:
                continue  # the follower has not come to it yet
            self.received[asset] += payment.received[0]
            if not self.recent(payment.at):
                continue
            self.checked["deposits"] += 1
            if credited is None:
                self.add("deposit_not_credited", payment.shown(payment.received))
            elif credited[0] != payment.received[0]:
                deposit, ledger_amount = chain_deposit_id(payment.payment_id), chain_amount(credited[0])
                self.add(
                    "amount_mismatch", payment.shown(payment.received), deposit=deposit, ledger_amount=ledger_amount
                )
        for asset, clearing in self.r.clearing.items():
            for payment_id, (amount, when) in clearing.deposits.items():
                if payment_id not in seen and self.recent(when):
                    deposit = {"deposit": chain_deposit_id(payment_id), "payment": payment_id}
                    self.add("deposit_without_chain_payment", deposit, asset=asset, amount=chain_amount(amount))

    def _worker_rows(self) -> None:
        """The worker's ended rows must say what the books say (or the worker lost track)."""
        rows = self.r.store.conn().execute(
            "SELECT payout_id, state, tx_hash, stroops, destination, asset FROM chain_payouts "
            "WHERE state IN ('confirmed', 'failed') AND asset = ANY(%s)",
            (list(self.r.settings.assets),),
        )
        by_id = {p.payout_id: p for p in self.payouts}
        for row in rows:
            payout = by_id.get(row["payout_id"])
            if payout is None or not payout.resolved or not self.recent(payout.modified_on):
                continue  # (ended in the books after they were read: the next run sees it)
            books = {"state": payout.state, "stroops": payout.amount, "destination": payout.destination}
            books |= {"asset": payout.asset, "tx_hash": payout.tx_hash if payout.state == CONFIRMED else row["tx_hash"]}
            differing = sorted(k for k, v in books.items() if (int(row[k]) if k == "stroops" else row[k]) != v)
            if differing:
                worker, ledger = ({k: str(side[k]) for k in differing} for side in (row, books))
                self.add("worker_record_mismatch", payout=payout.payout_id, worker=worker, ledger=ledger)

    def _clearing(self) -> dict[str, Any]:
        shown = {}
        for asset in sorted(self.r.settings.assets):
            account = self.r.clearing[asset].account
            posted = account.posted_credits - account.posted_debits if account else 0
            pending = account.pending_credits if account else 0
            expected_posted = self.paid_out[asset] - self.received[asset]
            expected_pending = sum(p.amount for p in self.payouts if p.asset == asset and not p.resolved)
            shown[asset] = {
                "account": clearing_account_id(asset),
                "posted": {"expected": chain_amount(expected_posted), "actual": chain_amount(posted)},
                "pending": {"expected": chain_amount(expected_pending), "actual": chain_amount(pending)},
            }
            if (expected_posted, expected_pending) != (posted, pending):
                self.add("clearing_balance_mismatch", shown[asset], asset=asset)
        return shown


def _payout_shown(payout: Payout) -> Difference:
    books = {"payout": payout.payout_id, "tx_hash": payout.tx_hash, "ledger": payout.ledger, "asset": payout.asset}
    amount, at = chain_amount(payout.amount), payout.modified_on.isoformat()
    return books | {"amount": amount, "destination": payout.destination, "confirmed_at": at}


def run_once(reconciler: Reconciler, since: datetime | None, known: set[str]) -> Report:
    """One run of the service: the gauges set, the run logged, and each difference logged
    once while it lasts (``known``, kept between runs, holds those already logged)."""
    report = reconciler.run(since)
    metrics.chain_differences().set(len(report.differences))
    metrics.chain_reconciled().set(time.time())
    kinds = dict(Counter(d["kind"] for d in report.differences))
    log.log(logging.WARNING if kinds else logging.INFO, "chain reconciled", extra={"differences": kinds})
    current = {json.dumps(d, sort_keys=True) for d in report.differences}
    for new in sorted(current - known):
        log.warning("chain difference", extra={"difference": json.loads(new)})
    known.clear()
    known.update(current)
    return report


def run_periodically(reconciler: Reconciler, since: datetime | None, every: float, stop: threading.Event) -> None:
    """Until ``stop``: a run that cannot read the chain or the books is logged and tried
    again at the next interval (the timestamp gauge then falls behind: the alert)."""
    known: set[str] = set()
    while not stop.is_set():
        try:
            run_once(reconciler, since, known)
        except UNREADABLE:
            log.exception("reconciliation could not read the chain or the books; trying again")
        except Exception:  # a record it cannot make sense of: the service goes on, the gauge falls behind
            log.exception("reconciliation failed; trying again")
        stop.wait(every)
