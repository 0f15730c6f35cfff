"""The auditor's replay: every stored event, in order, checked without trusting anything
the ledger computed from it.

It reads the rows as stored (stream, version, topic, JSON state, hash) and folds them
itself: not through the domain's aggregates, not through the read models. Along the way
it checks, at every position:

- the hash chain of every stream, and every seal's Merkle root over the streams' heads;
- double entry: per asset, at the end of every write, posted and pending net to zero;
- no client account below its overdraft limit;
- every hold resolved at most once, for the amount it holds;
- every transfer id used once, and every movement naming a transfer that exists.

The fold is written for speed (a million events in seconds): rows are plain tuples, the
state is decoded with orjson, and dispatch is one dict lookup on the topic.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic

from audit.hashes import StreamHeads, hash_prefix
from ledger.accounts import BALANCE_FIELDS, Account
from ledger.fees import FeeRule
from ledger.money import Asset
from ledger.payouts import Payout
from ledger.seals import SEAL_STREAM
from ledger.transactions import Transaction
from ledger.transfers import Transfer

# Each check reads only the columns it needs (the database and the driver cost as much as the checks):
# the chain check (position, stream uuid bytes, version, state, stored hash, write (its first
# position), what the hash covers before the state: see ``hash_prefix``) ...
ChainRow = tuple[int, bytes, int, bytes, bytes, int, bytes]
# ... and the books' check (position, stream uuid bytes, version, topic utf-8, state, write).
BookRow = tuple[int, bytes, int, bytes, bytes, int]
Row = ChainRow | BookRow
CHAIN, BOOKS = "chain", "books"
Pages = Callable[[str], Iterator[list[Any]]]  # the pages of rows of one shape (CHAIN or BOOKS)
Leg = tuple[str, int, bytes, int, int]  # transfer id, kind, account stream, amount, pending amount released

(
    OPENED,
    DEBITED,
    CREDITED,
    DEBIT_PENDING,
    CREDIT_PENDING,
    PENDING_DEBIT_POSTED,
    PENDING_CREDIT_POSTED,
    PENDING_DEBIT_VOIDED,
    PENDING_CREDIT_VOIDED,
    OVERDRAFT_CHANGED,
    TRANSFER_CREATED,
    TRANSFER_POSTED_LATER,
    TRANSFER_VOIDED,
    NAMED,
) = range(1, 15)
KINDS: dict[bytes, int] = {
    get_topic(cls).encode(): kind
    for cls, kind in (
        (Account.Opened, OPENED),
        (Account.Debited, DEBITED),
        (Account.Credited, CREDITED),
        (Account.DebitPending, DEBIT_PENDING),
        (Account.CreditPending, CREDIT_PENDING),
        (Account.PendingDebitPosted, PENDING_DEBIT_POSTED),
        (Account.PendingCreditPosted, PENDING_CREDIT_POSTED),
        (Account.PendingDebitVoided, PENDING_DEBIT_VOIDED),
        (Account.PendingCreditVoided, PENDING_CREDIT_VOIDED),
        (Account.OverdraftLimitChanged, OVERDRAFT_CHANGED),
        (Transfer.Created, TRANSFER_CREATED),
        (Transfer.PendingPosted, TRANSFER_POSTED_LATER),
        (Transfer.Voided, TRANSFER_VOIDED),
        (Transaction.Created, NAMED),
        (FeeRule.Created, NAMED),
        (Payout.Requested, NAMED),
    )
}
_NAME_FIELDS = {"transaction_id": "transaction", "payout_id": "payout", "operation": "fee rule"}
_SEALS = SEAL_STREAM.bytes
_NO_HEAD = (0, b"")
_POSTINGS = (PENDING_DEBIT_POSTED, PENDING_CREDIT_POSTED)
_LEG_NAMES = {
    DEBITED: "debit of",
    CREDITED: "credit of",
    DEBIT_PENDING: "hold on",
    CREDIT_PENDING: "pending credit of",
    PENDING_DEBIT_POSTED: "posted hold on",
    PENDING_CREDIT_POSTED: "posted pending credit of",
    PENDING_DEBIT_VOIDED: "voided hold on",
    PENDING_CREDIT_VOIDED: "voided pending credit of",
}
POSTED, PENDING, RESOLVED = 0, 1, 2
# An account: [asset, posted debits, posted credits, pending debits, pending credits, overdraft limit, system, id]
ASSET, PD, PC, QD, QC, LIMIT, SYSTEM, ID = range(8)


@dataclass(frozen=True)
class Finding:
    kind: str
    position: int | None
    subject: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "position": self.position, "subject": self.subject, "detail": self.detail}


@dataclass
class SealSeen:
    number: int
    position: int
    through_position: int
    root: str


# A finding before its stream is named: (kind, position, stream, detail).
RawFinding = tuple[str, int | None, bytes, str]


class _Fold:
    """What both checks share: where the replay stops, at the end of a write."""

    def __init__(self, to_position: int | None, to_time: datetime | None) -> None:
        self.to_position, self.to_time = to_position, to_time
        self.raw: list[RawFinding] = []
        self.stopped = False
        self._write: int | None = None

    def run(self, pages: Iterable[list[Any]], progress: Any = None) -> None:
        for page in pages:
            self.fold(page)
            if progress is not None:
                progress.update(len(page))
            if self.stopped:
                break
        self.finish()

    def fold(self, rows: list[Any]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last row."""

    def _past_the_end(self, position: int, state: bytes) -> bool:
        """At the first event of a write: is it past where the replay stops?"""
        past = (self.to_position is not None and position > self.to_position) or (
            self.to_time is not None and _event_time(state) > self.to_time
        )
        self.stopped = past
        return past


class ChainCheck(_Fold):
    """The hash chain of every stream, the versions' sequence, and every seal's root."""

    def __init__(self, to_position: int | None = None, to_time: datetime | None = None) -> None:
        super().__init__(to_position, to_time)
        self.heads = StreamHeads()
        self.seals: list[SealSeen] = []
        self.last_position = 0
        self.after_seal = 0  # events after the last seal: covered by the hash chains alone
        self._gaps: dict[tuple[bytes, int, int], int] = {}  # (stream, first, last missing version) -> finding

    def fold(self, rows: list[ChainRow]) -> None:
        heads, dirty, heads_get = self.heads.heads, self.heads.dirty, self.heads.heads.get
        current, last, after_seal = self._write, self.last_position, self.after_seal
        for position, stream, version, state, stored, write, prefix in rows:
            if write != current:
                if self._past_the_end(position, state):
                    break
                current = self._write = write
            if position <= last:
                self.raw.append(("out_of_order", position, stream, f"position {position} comes after {last}"))
            previous_version, previous = heads_get(stream, _NO_HEAD)
            if stream == _SEALS:
                self.last_position = last
                self._check_seal(position, version, state)
                after_seal = -1
            if version == previous_version + 1:
                try:
                    fits = sha256(b"".join((previous, prefix, state))).digest() == stored
                except TypeError:  # a column set to NULL
                    fits = False
                if not fits:
                    self.raw.append(
                        (
                            "hash_mismatch",
                            position,
                            stream,
                            f"version {version} does not match its hash: edited, moved or written outside the ledger",
                        )
                    )
                heads[stream] = dirty[stream] = (version, stored)
            else:
                self._out_of_sequence(position, stream, version, previous_version)
                if version > previous_version:
                    heads[stream] = dirty[stream] = (version, stored)  # it chains from a version not seen
            last = position
            after_seal += 1
        self.last_position, self.after_seal = last, after_seal

    def _out_of_sequence(self, position: int, stream: bytes, version: int, previous: int) -> None:
        """A gap in a stream's versions (events deleted), or a version arriving after a later
        one (events reordered): in that case the gap it leaves behind is its own doing."""
        if version > previous:
            kind = "seal_missing" if stream == _SEALS else "events_missing"
            detail = f"versions {previous + 1} to {version - 1} are missing before this one (deleted)"
            self._gaps[(stream, previous + 1, version - 1)] = len(self.raw)
            self.raw.append((kind, position, stream, detail))
            return
        detail = f"version {version} comes after version {previous} (reordered or duplicated)"
        for (gap_stream, low, high), index in list(self._gaps.items()):
            if gap_stream == stream and low <= version <= high:
                _, moved_past, _, _ = self.raw[index]
                detail = f"version {version} is stored after version {high + 1} (position {moved_past}): reordered"
                if low == high:
                    del self._gaps[(gap_stream, low, high)]
                    self.raw[index] = ("", None, stream, "")  # not deleted after all
        self.raw.append(("out_of_order", position, stream, detail))

    def _check_seal(self, position: int, number: int, state: bytes) -> None:
        root = self.heads.root().hex()
        try:
            data = orjson.loads(state)
            sealed, through, streams = str(data["root"]), data["through_position"], data["streams"]
        except Exception as exc:  # noqa: BLE001 - whatever is there, it is not a seal the sealer wrote
            self.raw.append(("seal_mismatch", position, _SEALS, f"is not a seal: {exc!r}"))
            return
        self.seals.append(SealSeen(number, position, through, sealed))
        if (sealed, through, streams) != (root, self.last_position, len(self.heads)):
            detail = (
                f"covers {streams} streams through position {through} with root {sealed[:16]}…; the replay has "
                f"{len(self.heads)} streams through {self.last_position} with root {root[:16]}…: "
                "history before it was changed"
            )
            self.raw.append(("seal_mismatch", position, _SEALS, detail))

    def summary(self) -> ChainSummary:
        return ChainSummary([f for f in self.raw if f[0]], self.seals, len(self.heads), self.after_seal)


@dataclass
class ChainSummary:
    """What the chain check found; small enough to hand from a child process."""

    raw: list[RawFinding]
    seals: list[SealSeen]
    streams: int
    after_seal: int


class BookCheck(_Fold):
    """Balances, double entry, limits, holds and ids, from the events' content.

    Every movement must be one of the legs its transfer calls for, in the write that
    creates, posts or voids the transfer: a movement added, removed or changed on its
    own breaks that, even where the totals still balance.
    """

    def __init__(self, to_position: int | None = None, to_time: datetime | None = None) -> None:
        super().__init__(to_position, to_time)
        self.events = 0
        self.first_position: int | None = None
        self.last_position = 0
        # account stream -> [asset, posted debits, posted credits, pending debits, pending credits,
        #                    overdraft limit, system, id, version]
        self.accounts: dict[bytes, list[Any]] = {}
        self.totals: dict[str, list[int]] = {}  # asset -> [posted net, pending net], credits minus debits
        self._account_streams: dict[str, bytes] = {}
        self._baseline: dict[str, tuple[int, int]] = {}
        # transfer stream -> [POSTED, PENDING or RESOLVED, id, debit account stream, credit account stream,
        #                     amount, created pending]
        self._transfers: dict[bytes, list[Any]] = {}
        self._transfer_ids: dict[str, bytes] = {}
        self._names: dict[bytes, str] = {}  # other named streams
        self._holds: dict[tuple[bytes, str, int], int] = {}
        self._write_assets: set[str] = set()
        # The write's legs, as moved and as its transfers call for them, each counted:
        # (transfer id, kind, account stream, amount, pending amount released) -> how many.
        self._moved: dict[Leg, int] = {}
        self._called: dict[Leg, int] = {}

    def fold(self, rows: list[BookRow]) -> None:  # one flat loop: the hot path
        accounts, totals, holds, loads = self.accounts, self.totals, self._holds, orjson.loads
        transfers, transfer_ids = self._transfers, self._transfer_ids
        assets_add, kinds_get = self._write_assets.add, KINDS.get
        moved, called = self._moved, self._called
        current, last = self._write, self.last_position
        if rows and self.first_position is None:
            self.first_position = rows[0][0]
        for position, stream, version, topic, state, write in rows:
            if write != current:
                self._end_of_write()
                if self._past_the_end(position, state):
                    self.events += sum(1 for row in rows if row[0] < position)
                    self.last_position = last
                    return
                current = self._write = write
            last = position
            kind = kinds_get(topic, 0)
            if not kind:
                account = accounts.get(stream)
                if account is not None:  # an event that moves no money (a monitor's): the version still counts
                    account[8] = version
                continue
            try:
                data = loads(state)
                if kind <= OVERDRAFT_CHANGED:
                    account = accounts.get(stream)
                    if kind == OPENED:
                        account_id, asset = data["account_id"], data["asset"]
                        Asset.parse(asset)
                        accounts[stream] = [asset, 0, 0, 0, 0, _exact(data, state, "overdraft_limit"), data["system"]]
                        accounts[stream] += [str(account_id), version]
                        self._account_streams[account_id] = stream
                        totals.setdefault(asset, [0, 0])
                        if version != 1 or account is not None:
                            self._finding("id_reused", position, stream, "opened again")
                        continue
                    if account is None:
                        self._finding("events_missing", position, stream, "moves an account that was never opened")
                        continue
                    account[8] = version
                    if kind == OVERDRAFT_CHANGED:
                        account[5] = _exact(data, state, "overdraft_limit")
                        if not account[6] and account[2] - account[1] - account[3] < -account[5]:
                            self._below_limit(account, position, stream)
                        continue
                    amount = data["amount"]
                    if type(amount) is not int or amount <= 0:
                        amount = _exact(data, state, "amount", positive=kind not in _POSTINGS)
                    transfer_id = data["transfer_id"]
                    asset = account[0]
                    sums = totals[asset]
                    pending_amount = 0
                    if kind == DEBITED:
                        account[1] += amount
                        sums[0] -= amount
                        if not account[6] and account[2] - account[1] - account[3] < -account[5]:
                            self._below_limit(account, position, stream)
                    elif kind == CREDITED:
                        account[2] += amount
                        sums[0] += amount
                    elif kind == DEBIT_PENDING:
                        account[3] += amount
                        sums[1] -= amount
                        self._hold(holds, (stream, transfer_id, 0), amount, position)
                        if not account[6] and account[2] - account[1] - account[3] < -account[5]:
                            self._below_limit(account, position, stream)
                    elif kind == CREDIT_PENDING:
                        account[4] += amount
                        sums[1] += amount
                        self._hold(holds, (stream, transfer_id, 1), amount, position)
                    else:
                        pending_amount = self._resolve(
                            account, sums, kind, data, state, amount, transfer_id, position, stream
                        )
                    assets_add(asset)
                    leg = (transfer_id, kind, stream, amount, pending_amount)
                    moved[leg] = moved.get(leg, 0) + 1
                    after = data.get("balance_after")
                    if after is not None and not _same_totals(after, account):
                        # Read again exactly: orjson reads integers beyond 64 bits as floats.
                        self._balance_after_differs(account, json.loads(state)["balance_after"], position, stream)
                elif kind == TRANSFER_CREATED:
                    transfer_id = data["transfer_id"]
                    if transfer_id in transfer_ids or version != 1:
                        self._finding("id_reused", position, stream, f"transfer id {transfer_id!r} is used again")
                    transfer_ids[transfer_id] = stream
                    amount = data["amount"]
                    if type(amount) is not int or amount <= 0:
                        amount = _exact(data, state, "amount", positive=True)
                    debit = self._account_streams.get(data["debit_account"], b"")
                    credit = self._account_streams.get(data["credit_account"], b"")
                    pending = data["pending"] is True
                    transfers[stream] = [PENDING if pending else POSTED, transfer_id, debit, credit, amount, pending]
                    if pending:
                        legs = (
                            (transfer_id, DEBIT_PENDING, debit, amount, 0),
                            (transfer_id, CREDIT_PENDING, credit, amount, 0),
                        )
                    else:
                        legs = ((transfer_id, DEBITED, debit, amount, 0), (transfer_id, CREDITED, credit, amount, 0))
                    for leg in legs:
                        called[leg] = called.get(leg, 0) + 1
                elif kind == TRANSFER_POSTED_LATER or kind == TRANSFER_VOIDED:
                    transfer = transfers.get(stream)
                    if transfer is None or transfer[0] != PENDING:
                        self._finding(
                            "hold_resolved_twice", position, stream, "resolves a transfer that is not pending"
                        )
                    if transfer is not None:
                        transfer[0] = RESOLVED
                        for leg in _resolution_legs(transfer, kind, data, state):
                            called[leg] = called.get(leg, 0) + 1
                else:  # NAMED
                    for key, noun in _NAME_FIELDS.items():
                        if key in data:
                            suffix = f" {data['asset']}" if noun == "fee rule" else ""
                            self._names[stream] = f"{noun} {data[key]}{suffix}"
                            break
            except Exception as exc:  # noqa: BLE001 - not what the ledger writes: forged or edited
                self._finding("unreadable", position, stream, f"its content does not read as {topic!r}: {exc!r}")
        self.events += len(rows)
        self.last_position = last

    def finish(self) -> None:
        self._end_of_write()

    def _resolve(
        self,
        account: list[Any],
        sums: list[int],
        kind: int,
        data: dict[str, Any],
        state: bytes,
        amount: int,
        transfer_id: str,
        position: int,
        stream: bytes,
    ) -> int:
        """A hold posted or voided: it must be pending, and be released for what it holds.
        Returns the amount released."""
        debit = kind in (PENDING_DEBIT_POSTED, PENDING_DEBIT_VOIDED)
        held = self._holds.pop((stream, transfer_id, 0 if debit else 1), None)
        released = _exact(data, state, "pending_amount", positive=True) if kind in _POSTINGS else amount
        if held is None:
            self._finding(
                "hold_resolved_twice",
                position,
                stream,
                f"resolves a hold of transfer {transfer_id!r} that is not pending (resolved before?)",
            )
        elif released != held or amount > held:
            self._finding(
                "hold_mismatch",
                position,
                stream,
                f"resolves the hold of transfer {transfer_id!r} ({held}) for {released}/{amount}",
            )
        if debit:
            account[QD] -= released
            sums[1] += released
            if kind == PENDING_DEBIT_POSTED:
                account[PD] += amount
                sums[0] -= amount
        else:
            account[QC] -= released
            sums[1] -= released
            if kind == PENDING_CREDIT_POSTED:
                account[PC] += amount
                sums[0] += amount
        return released if kind in _POSTINGS else 0

    def _hold(
        self, holds: dict[tuple[bytes, str, int], int], key: tuple[bytes, str, int], amount: int, at: int
    ) -> None:
        if key in holds:
            self._finding("id_reused", at, key[0], f"holds for transfer {key[1]!r} twice")
        holds[key] = amount

    def _balance_after_differs(self, account: list[Any], after: Any, position: int, stream: bytes) -> None:
        """What subscribers were told about the balance (``balance_after``, on Kafka and in
        answers) must be what the replay gives. ``after`` is read exactly (beyond 64 bits,
        orjson's first reading gave floats, which never equal the replay's integers)."""
        if _same_totals(after, account):
            return
        replayed = dict(zip(BALANCE_FIELDS, account[1:5], strict=True))
        self._finding(
            "balance_after_mismatch", position, stream, f"records {after} after it; the replay gives {replayed}"
        )

    def _below_limit(self, account: list[Any], position: int, stream: bytes) -> None:
        unit = Asset.parse(account[ASSET])
        available = unit.format(account[PC] - account[PD] - account[QD])
        self._finding(
            "below_limit",
            position,
            stream,
            f"available {available} is below its limit of -{unit.format(account[LIMIT])}",
        )

    def _end_of_write(self) -> None:
        """Double entry at the end of a write, and every movement one its transfer calls for."""
        moved, called = self._moved, self._called
        for asset in self._write_assets:
            posted, pending = self.totals[asset]
            before = self._baseline.get(asset, (0, 0))
            if (posted, pending) != before:
                accounts = sorted({self.subject(leg[2]) for leg in moved if self.accounts[leg[2]][ASSET] == asset})
                unit = Asset.parse(asset)
                detail = (
                    f"the write at position {self._write} leaves {asset} off by posted "
                    f"{unit.format(posted - before[0])}, pending {unit.format(pending - before[1])} "
                    f"(it moved {', '.join(accounts)})"
                )
                self.raw.append(("double_entry", self._write, asset.encode(), detail))
                self._baseline[asset] = (posted, pending)  # report each break once, where it happens
        if moved != called:
            self._legs_differ()
        self._write_assets.clear()
        moved.clear()
        called.clear()

    def _legs_differ(self) -> None:
        """Name, per transfer, how the write's movements differ from what the transfer calls for."""
        wanted: dict[str, list[tuple[int, bytes, int, int]]] = {}
        found: dict[str, list[tuple[int, bytes, int, int]]] = {}
        for legs, into in ((self._called, wanted), (self._moved, found)):
            for (transfer_id, kind, account, amount, pending), count in legs.items():
                into.setdefault(transfer_id, []).extend([(kind, account, amount, pending)] * count)
        for transfer_id in sorted(wanted.keys() | found.keys()):
            should, did = sorted(wanted.get(transfer_id, ())), sorted(found.get(transfer_id, ()))
            if should == did:
                continue
            if transfer_id not in self._transfer_ids:
                detail = f"moves money for transfer {transfer_id!r}, which does not exist"
                self._finding("unknown_transfer", self._write, did[0][1], detail)
                continue
            detail = (
                f"the write at position {self._write} moves {self._describe(did) or 'nothing'} for it; "
                f"the transfer calls for {self._describe(should) or 'nothing'}"
            )
            self._finding("movement_mismatch", self._write, self._transfer_ids[transfer_id], detail)

    def _describe(self, legs: list[tuple[int, bytes, int, int]]) -> str:
        return ", ".join(f"{_LEG_NAMES[kind]} {self.subject(account)} {amount}" for kind, account, amount, _ in legs)

    def _finding(self, kind: str, position: int | None, stream: bytes, detail: str) -> None:
        self.raw.append((kind, position, stream, detail))

    def subject(self, stream: bytes) -> str:
        """What a stream is, in the ledger's words: an account, a transfer, an asset."""
        account = self.accounts.get(stream)
        if account is not None:
            return f"account {account[ID]}"
        if stream == _SEALS:
            return "seals"
        transfer = self._transfers.get(stream)
        if transfer is not None:
            return f"transfer {transfer[1]}"
        if stream in self._names:
            return self._names[stream]
        if not stream:
            return "no account"
        if len(stream) != 16:
            return stream.decode(errors="replace")  # an asset
        return f"stream {UUID(bytes=stream)}"


class Verifier:
    """Both checks over the same rows: in one process (``run``), or the chain check in a
    child process reading its own copy of the rows (``run_parallel``: two cores)."""

    def __init__(self, to_position: int | None = None, to_time: datetime | None = None) -> None:
        self.chain = ChainCheck(to_position, to_time)
        self.books = BookCheck(to_position, to_time)
        self._chain: ChainSummary | None = None
        self.extra: list[Finding] = []

    def run(self, open_pages: Pages, progress: Any = None) -> None:
        """One check after the other, in this process."""
        self.chain.run(open_pages(CHAIN))
        self.books.run(open_pages(BOOKS), progress)
        self._chain = self.chain.summary()

    def run_parallel(self, open_pages: Pages, progress: Any = None) -> None:
        """``open_pages`` is called once in each process, for the rows of its check."""
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_chain_child, args=(self.chain, open_pages, send), name="verify-chain")
        child.start()
        send.close()
        try:
            self.books.run(open_pages(BOOKS), progress)
            outcome, value = receive.recv()
        except BaseException:
            child.terminate()
            raise
        finally:
            child.join()
        if outcome == "error":
            raise RuntimeError(f"the hash-chain check failed: {value}")
        self._chain = value

    @property
    def _summary(self) -> ChainSummary:
        if self._chain is None:
            raise RuntimeError("run the verifier first")
        return self._chain

    @property
    def findings(self) -> list[Finding]:
        raw = sorted(self._summary.raw + self.books.raw, key=lambda f: (f[1] is None, f[1] or 0))
        named = [Finding(kind, position, self.books.subject(stream), detail) for kind, position, stream, detail in raw]
        return named + self.extra

    @property
    def seals(self) -> list[SealSeen]:
        return self._summary.seals

    @property
    def streams(self) -> int:
        return self._summary.streams

    @property
    def after_seal(self) -> int:
        return self._summary.after_seal

    @property
    def events(self) -> int:
        return self.books.events

    @property
    def first_position(self) -> int | None:
        return self.books.first_position

    @property
    def last_position(self) -> int:
        return self.books.last_position

    @property
    def totals(self) -> dict[str, list[int]]:
        return self.books.totals

    def balances(self) -> dict[str, dict[str, int | str]]:
        """Every account's balances in minor units, by account id."""
        return {
            a[ID]: {
                "asset": a[ASSET],
                "posted_debits": a[PD],
                "posted_credits": a[PC],
                "pending_debits": a[QD],
                "pending_credits": a[QC],
            }
            for a in self.books.accounts.values()
        }

    def account_versions(self) -> dict[str, int]:
        return {a[ID]: a[8] for a in self.books.accounts.values()}

    def check_expected_seals(self, expected: Iterable[tuple[int, str]]) -> None:
        """Seals an auditor kept from earlier (a report, the Kafka topic) must still be here."""
        seen = {s.number: s for s in self.seals}
        for number, root in expected:
            seal = seen.get(number)
            if seal is None:
                self.extra.append(Finding("seal_missing", None, "seals", f"seal {number} is not in the replay"))
            elif seal.root != root:
                detail = f"seal {number} has root {seal.root}, not {root}"
                self.extra.append(Finding("seal_mismatch", seal.position, "seals", detail))


def _chain_child(chain: ChainCheck, open_pages: Pages, send: Any) -> None:
    try:
        chain.run(open_pages(CHAIN))
        send.send(("ok", chain.summary()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        send.send(("error", f"{type(exc).__name__}: {exc}"))


def _resolution_legs(transfer: list[Any], kind: int, data: dict[str, Any], state: bytes) -> tuple[Leg, Leg]:
    """The legs a pending transfer's post (for ``amount``) or void calls for."""
    _, transfer_id, debit, credit, held, _ = transfer
    if kind == TRANSFER_POSTED_LATER:
        amount = _exact(data, state, "amount")
        return (transfer_id, PENDING_DEBIT_POSTED, debit, amount, held), (
            transfer_id,
            PENDING_CREDIT_POSTED,
            credit,
            amount,
            held,
        )
    return (transfer_id, PENDING_DEBIT_VOIDED, debit, held, 0), (transfer_id, PENDING_CREDIT_VOIDED, credit, held, 0)


def _same_totals(after: Any, account: list[Any]) -> bool:
    """Whether a recorded ``balance_after`` is exactly the replay's four totals: whole
    numbers only (a float that rounds to the total, or ``true`` for 1, is not it), and
    nothing else in it."""
    if type(after) is not dict or len(after) != len(BALANCE_FIELDS):
        return False
    values = [after.get(name) for name in BALANCE_FIELDS]
    return all(type(value) is int for value in values) and values == account[1:5]


def _exact(data: dict[str, Any], state: bytes, key: str, *, positive: bool = False) -> int:
    """An amount as an exact integer: orjson reads integers beyond 64 bits as floats, so
    those are read again with the standard library (amounts go up to 2^127 - 1)."""
    value = data[key]
    if type(value) is not int:
        value = json.loads(state)[key]
    if type(value) is not int or value < 0 or (positive and value == 0):
        raise ValueError(f"{key} {value!r} is not a{' positive' if positive else ''} whole number of minor units")
    return value


def _event_time(state: bytes) -> datetime:
    try:
        moment = datetime.fromisoformat(orjson.loads(state)["timestamp"]["_data_"])
    except Exception:  # noqa: BLE001 - unreadable (and named as such by the checks): not a reason to stop
        return _NO_TIME
    return moment if moment.tzinfo is not None else _NO_TIME


_NO_TIME = datetime.min.replace(tzinfo=UTC)


# Sources --------------------------------------------------------------------------

_PAGE_FROM = "FROM ledger_events WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
_PAGE_SQL = {
    CHAIN: "SELECT notification_id, uuid_send(originator_id), originator_version, state, hash, write_position, "
    "int8send(notification_id) || uuid_send(originator_id) || int8send(originator_version) "
    "|| int8send(write_position) || convert_to(topic, 'UTF8') || '\\x00'::bytea " + _PAGE_FROM,
    BOOKS: "SELECT notification_id, uuid_send(originator_id), originator_version, convert_to(topic, 'UTF8'), state, "
    "write_position " + _PAGE_FROM,
}


def read_only(url: str) -> Any:
    """A connection that can only read: every transaction is read-only (as on a replica)."""
    import psycopg

    return psycopg.connect(url, autocommit=True, options="-c default_transaction_read_only=on")


def store_head(url: str) -> int:
    """The store's last position now: what a replay of the live store reads up to."""
    with read_only(url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
        return int(row[0]) if row else 0


def store_pages_at(url: str, shape: str, *, head: int, page: int = 20_000) -> Iterator[list[Any]]:
    with read_only(url) as conn:
        yield from store_pages(conn, shape, head=head, page=page)


def store_pages(conn: Any, shape: str, *, head: int, page: int = 20_000) -> Iterator[list[Any]]:
    """The stored rows up to ``head``, a page at a time, each page its own short read (a
    replica cancels long ones). Inserts commit in position order (they hold the table
    lock until they commit), so paging by position misses nothing."""
    after = 0
    with conn.cursor(binary=True) as curs:
        while after < head:
            rows = curs.execute(_PAGE_SQL[shape], (after, head, page)).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]


def read_ahead(pages: Iterator[list[Any]], depth: int = 2) -> Iterator[list[Any]]:
    """The same pages, read by a thread while the caller folds the previous ones: the
    database (another process, another core) prepares the next page meanwhile."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        ready.put(("page", page), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            ready.put(("error", exc))

    reader = threading.Thread(target=produce, name="verify-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def file_pages(path: Path, shape: str, page: int = 20_000) -> Iterator[list[Any]]:
    """An export's events as stored rows (``ledger audit export`` carries them)."""
    from audit.stream import read_lines

    rows: list[Row] = []
    for event in read_lines(path):
        try:
            position, stream, version = (
                int(event["position"]),
                UUID(event["ledgerstream"]).bytes,
                int(event["sequence"]),
            )
            topic, state = event["ledgertopic"].encode(), base64.b64decode(event["ledgerstate"])
            write = int(event["ledgerwrite"])
            if shape == CHAIN:
                prefix = hash_prefix(position, stream, version, write, topic)
                rows.append((position, stream, version, state, bytes.fromhex(event["ledgerhash"]), write, prefix))
            else:
                rows.append((position, stream, version, topic, state, write))
        except Exception as exc:  # noqa: BLE001 - any malformed line is the export's fault, named as such
            raise ValueError(f"{path}: event {event.get('id')!r} lacks the stored form ({exc!r})") from None
        if len(rows) == page:
            yield rows
            rows = []
    if rows:
        yield rows


# Report ---------------------------------------------------------------------------


def report(verifier: Verifier, *, source: str, elapsed: float, drift: list[Finding] | None = None) -> dict[str, Any]:
    findings = [*verifier.findings, *(drift or [])]
    last_seal = verifier.seals[-1] if verifier.seals else None
    accounts = []
    for account_id, b in sorted(verifier.balances().items(), key=lambda item: (str(item[1]["asset"]), item[0])):
        unit = Asset.parse(str(b["asset"]))
        accounts.append(
            {"account": account_id, "asset": b["asset"]}
            | {k: unit.format(int(v)) for k, v in b.items() if k != "asset"}
        )
    totals = {}
    for asset, (posted, pending) in sorted(verifier.totals.items()):
        unit = Asset.parse(asset)
        totals[asset] = {"posted": unit.format(posted), "pending": unit.format(pending)}
    return {
        "ok": not findings,
        "source": source,
        "events": verifier.events,
        "first_position": verifier.first_position,
        "last_position": verifier.last_position,
        "streams": verifier.streams,
        "elapsed_seconds": round(elapsed, 3),
        "events_per_second": round(verifier.events / elapsed) if elapsed > 0 else None,
        "seals": {
            "checked": len(verifier.seals),
            "last": None
            if last_seal is None
            else {"seal": last_seal.number, "position": last_seal.position, "root": last_seal.root},
            "events_after_last_seal": verifier.after_seal,
        },
        "read_model_compared": drift is not None,
        "findings": [f.as_dict() for f in findings],
        "totals": totals,
        "accounts": accounts,
    }
