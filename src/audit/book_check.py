"""The books' check: double entry, overdraft limits, pending transfers resolved once, ids
used once.

Its arithmetic is its own on purpose, written again from the stored events' payloads
rather than borrowed from the account aggregate or the projector: an auditor must not
trust what it checks. ``tests/integration/test_audit_verify.py`` holds the two to the
same balances.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from audit.folds import Fold
from audit.kinds import (
    CREDIT_PENDING,
    CREDITED,
    DEBIT_PENDING,
    DEBITED,
    KINDS,
    LEG_NAMES,
    NAME_FIELDS,
    OPENED,
    OVERDRAFT_CHANGED,
    PENDING,
    PENDING_CREDIT_POSTED,
    PENDING_CREDIT_VOIDED,
    PENDING_DEBIT_POSTED,
    PENDING_DEBIT_VOIDED,
    POSTED,
    POSTINGS,
    RESOLVED,
    TRANSFER_CREATED,
    TRANSFER_POSTED_LATER,
    TRANSFER_VOIDED,
    Leg,
    Nets,
    ReplayedAccount,
    ReplayedTransfer,
)
from audit.rows import BookRow
from ledger.accounts import BALANCE_FIELDS
from ledger.money import Asset
from ledger.seals import SEAL_STREAM

_SEALS = SEAL_STREAM.bytes


class BookCheck(Fold):
    """Balances, double entry, limits, pending transfers and ids, from the events' content.

    Every movement must be one of the legs its transfer calls for, in the write that
    creates, posts or voids the transfer: a movement added, removed or changed on its
    own breaks that, even where the totals still balance.
    """

    def __init__(self, to_position: int | None = None, to_time: datetime | None = None) -> None:
        super().__init__(to_position, to_time)
        self.events = 0
        self.first_position: int | None = None
        self.last_position = 0
        self.accounts: dict[bytes, ReplayedAccount] = {}  # by account stream
        self.totals: dict[str, Nets] = {}  # by asset
        self._account_streams: dict[str, bytes] = {}
        self._baseline: dict[str, tuple[int, int]] = {}
        self._transfers: dict[bytes, ReplayedTransfer] = {}  # by transfer stream
        self._transfer_ids: dict[str, bytes] = {}
        self._names: dict[bytes, str] = {}  # other named streams
        # (account stream, transfer id, 0 debit or 1 credit) -> the amount pending
        self._pending: dict[tuple[bytes, str, int], int] = {}
        self._write_assets: set[str] = set()
        # The write's legs, as moved and as its transfers call for them, each counted:
        # (transfer id, kind, account stream, amount, pending amount released) -> how many.
        self._moved: dict[Leg, int] = {}
        self._called: dict[Leg, int] = {}

    def fold(self, rows: list[BookRow]) -> None:  # one flat loop: the hot path
        accounts, totals, pending_sides, loads = self.accounts, self.totals, self._pending, orjson.loads
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
                    account.version = version
                continue
            try:
                data = loads(state)
                if kind <= OVERDRAFT_CHANGED:
                    account = accounts.get(stream)
                    if kind == OPENED:
                        account_id, asset = data["account_id"], data["asset"]
                        Asset.parse(asset)
                        limit = _exact(data, state, "overdraft_limit")
                        accounts[stream] = ReplayedAccount(
                            asset, 0, 0, 0, 0, limit, data["system"], str(account_id), version
                        )
                        self._account_streams[account_id] = stream
                        totals.setdefault(asset, Nets())
                        if version != 1 or account is not None:
                            self._finding("id_reused", position, stream, "opened again")
                        continue
                    if account is None:
                        self._finding("events_missing", position, stream, "moves an account that was never opened")
                        continue
                    account.version = version
                    if kind == OVERDRAFT_CHANGED:
                        account.overdraft_limit = _exact(data, state, "overdraft_limit")
                        if not account.system and (
                            account.posted_credits - account.posted_debits - account.pending_debits
                            < -account.overdraft_limit
                        ):
                            self._below_limit(account, position, stream)
                        continue
                    amount = data["amount"]
                    if type(amount) is not int or amount <= 0:
                        amount = _exact(data, state, "amount", positive=kind not in POSTINGS)
                    transfer_id = data["transfer_id"]
                    asset = account.asset
                    sums = totals[asset]
                    pending_amount = 0
                    if kind == DEBITED:
                        account.posted_debits += amount
                        sums.posted -= amount
                        if not account.system and (
                            account.posted_credits - account.posted_debits - account.pending_debits
                            < -account.overdraft_limit
                        ):
                            self._below_limit(account, position, stream)
                    elif kind == CREDITED:
                        account.posted_credits += amount
                        sums.posted += amount
                    elif kind == DEBIT_PENDING:
                        account.pending_debits += amount
                        sums.pending -= amount
                        self._add_pending(pending_sides, (stream, transfer_id, 0), amount, position)
                        if not account.system and (
                            account.posted_credits - account.posted_debits - account.pending_debits
                            < -account.overdraft_limit
                        ):
                            self._below_limit(account, position, stream)
                    elif kind == CREDIT_PENDING:
                        account.pending_credits += amount
                        sums.pending += amount
                        self._add_pending(pending_sides, (stream, transfer_id, 1), amount, position)
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
                    transfers[stream] = ReplayedTransfer(
                        PENDING if pending else POSTED, transfer_id, debit, credit, amount
                    )
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
                    if transfer is None or transfer.state != PENDING:
                        self._finding(
                            "hold_resolved_twice", position, stream, "resolves a transfer that is not pending"
                        )
                    if transfer is not None:
                        transfer.state = RESOLVED
                        for leg in _resolution_legs(transfer, kind, data, state):
                            called[leg] = called.get(leg, 0) + 1
                else:  # NAMED
                    for key, noun in NAME_FIELDS.items():
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
        account: ReplayedAccount,
        sums: Nets,
        kind: int,
        data: dict[str, Any],
        state: bytes,
        amount: int,
        transfer_id: str,
        position: int,
        stream: bytes,
    ) -> int:
        """A pending debit or credit posted or voided: it must be pending, and be released
        for what it holds. Returns the amount released."""
        debit = kind in (PENDING_DEBIT_POSTED, PENDING_DEBIT_VOIDED)
        held = self._pending.pop((stream, transfer_id, 0 if debit else 1), None)
        released = _exact(data, state, "pending_amount", positive=True) if kind in POSTINGS else amount
        if held is None:
            self._finding(
                "hold_resolved_twice",
                position,
                stream,
                f"resolves transfer {transfer_id!r}, which is not pending on it (resolved before?)",
            )
        elif released != held or amount > held:
            self._finding(
                "hold_mismatch",
                position,
                stream,
                f"resolves transfer {transfer_id!r}, pending on it for {held}, for {released}/{amount}",
            )
        if debit:
            account.pending_debits -= released
            sums.pending += released
            if kind == PENDING_DEBIT_POSTED:
                account.posted_debits += amount
                sums.posted -= amount
        else:
            account.pending_credits -= released
            sums.pending -= released
            if kind == PENDING_CREDIT_POSTED:
                account.posted_credits += amount
                sums.posted += amount
        return released if kind in POSTINGS else 0

    def _add_pending(
        self, pending_sides: dict[tuple[bytes, str, int], int], key: tuple[bytes, str, int], amount: int, at: int
    ) -> None:
        if key in pending_sides:
            self._finding("id_reused", at, key[0], f"is pending for transfer {key[1]!r} twice")
        pending_sides[key] = amount

    def _balance_after_differs(self, account: ReplayedAccount, after: Any, position: int, stream: bytes) -> None:
        """What subscribers were told about the balance (``balance_after``, on Kafka and in
        answers) must be what the replay gives. ``after`` is read exactly (beyond 64 bits,
        orjson's first reading gave floats, which never equal the replay's integers)."""
        if _same_totals(after, account):
            return
        replayed = {name: getattr(account, name) for name in BALANCE_FIELDS}
        self._finding(
            "balance_after_mismatch", position, stream, f"records {after} after it; the replay gives {replayed}"
        )

    def _below_limit(self, account: ReplayedAccount, position: int, stream: bytes) -> None:
        unit = Asset.parse(account.asset)
        available = unit.format(account.posted_credits - account.posted_debits - account.pending_debits)
        self._finding(
            "below_limit",
            position,
            stream,
            f"available {available} is below its limit of -{unit.format(account.overdraft_limit)}",
        )

    def _end_of_write(self) -> None:
        """Double entry at the end of a write, and every movement one its transfer calls for."""
        moved, called = self._moved, self._called
        for asset in self._write_assets:
            nets = self.totals[asset]
            posted_before, pending_before = self._baseline.get(asset, (0, 0))
            if nets.posted != posted_before or nets.pending != pending_before:
                accounts = sorted(
                    {self.subject(stream) for _, _, stream, _, _ in moved if self.accounts[stream].asset == asset}
                )
                unit = Asset.parse(asset)
                detail = (
                    f"the write at position {self._write} leaves {asset} off by posted "
                    f"{unit.format(nets.posted - posted_before)}, pending {unit.format(nets.pending - pending_before)} "
                    f"(it moved {', '.join(accounts)})"
                )
                self.raw.append(("double_entry", self._write, asset.encode(), detail))
                self._baseline[asset] = (nets.posted, nets.pending)  # report each break once, where it happens
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
        return ", ".join(f"{LEG_NAMES[kind]} {self.subject(account)} {amount}" for kind, account, amount, _ in legs)

    def _finding(self, kind: str, position: int | None, stream: bytes, detail: str) -> None:
        self.raw.append((kind, position, stream, detail))

    def subject(self, stream: bytes) -> str:
        """What a stream is, in the ledger's words: an account, a transfer, an asset."""
        account = self.accounts.get(stream)
        if account is not None:
            return f"account {account.account_id}"
        if stream == _SEALS:
            return "seals"
        transfer = self._transfers.get(stream)
        if transfer is not None:
            return f"transfer {transfer.transfer_id}"
        if stream in self._names:
            return self._names[stream]
        if not stream:
            return "no account"
        if len(stream) != 16:
            return stream.decode(errors="replace")  # an asset
        return f"stream {UUID(bytes=stream)}"


def _resolution_legs(transfer: ReplayedTransfer, kind: int, data: dict[str, Any], state: bytes) -> tuple[Leg, Leg]:
    """The legs a pending transfer's post (for ``amount``) or void calls for."""
    transfer_id, debit, credit, held = transfer.transfer_id, transfer.debit, transfer.credit, transfer.amount
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


def _same_totals(after: Any, account: ReplayedAccount) -> bool:
    """Whether a recorded ``balance_after`` is exactly the replay's four totals: whole
    numbers only (a float that rounds to the total, or ``true`` for 1, is not it), and
    nothing else in it."""
    if type(after) is not dict or len(after) != len(BALANCE_FIELDS):
        return False
    values = [after.get(name) for name in BALANCE_FIELDS]
    replayed = [account.posted_debits, account.posted_credits, account.pending_debits, account.pending_credits]
    return all(type(value) is int for value in values) and values == replayed


def _exact(data: dict[str, Any], state: bytes, key: str, *, positive: bool = False) -> int:
    """An amount as an exact integer: orjson reads integers beyond 64 bits as floats, so
    those are read again with the standard library (amounts go up to 2^127 - 1)."""
    value = data[key]
    if type(value) is not int:
        value = json.loads(state)[key]
    if type(value) is not int or value < 0 or (positive and value == 0):
        raise ValueError(f"{key} {value!r} is not a{' positive' if positive else ''} whole number of minor units")
    return value
