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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from hashlib import sha256
from pathlib import Path
from struct import Struct
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic

from audit.hashes import StreamHeads
from ledger.accounts import Account
from ledger.fees import FeeRule
from ledger.money import Asset
from ledger.payouts import Payout
from ledger.seals import SEAL_STREAM, Seal
from ledger.transactions import Transaction
from ledger.transfers import Transfer

# (position, stream uuid bytes, version, topic utf-8, state, stored hash, writing transaction)
Row = tuple[int, bytes, int, bytes, bytes, bytes, str]

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
    TRANSFER_RESOLVED,
    SEAL,
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
        (Transfer.PendingPosted, TRANSFER_RESOLVED),
        (Transfer.Voided, TRANSFER_RESOLVED),
        (Seal.Recorded, SEAL),
        (Transaction.Created, NAMED),
        (FeeRule.Created, NAMED),
        (Payout.Requested, NAMED),
    )
}
_NAME_FIELDS = {"transaction_id": "transaction", "payout_id": "payout", "operation": "fee rule"}
_INT8 = Struct(">q").pack
_SEALS = SEAL_STREAM.bytes
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


@dataclass
class Verifier:
    """Feed it rows in position order (``run``); read ``findings`` and the balances."""

    to_position: int | None = None
    to_time: datetime | None = None
    findings: list[Finding] = field(default_factory=list)
    events: int = 0
    first_position: int | None = None
    last_position: int = 0
    last_time: str | None = None
    seals: list[SealSeen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.heads = StreamHeads()
        self.accounts: dict[bytes, list[Any]] = {}
        self.totals: dict[str, list[int]] = {}  # asset -> [posted net, pending net], credits minus debits
        self._baseline: dict[str, tuple[int, int]] = {}
        self._transfers: dict[bytes, int] = {}  # transfer stream -> POSTED, PENDING or RESOLVED
        self._transfer_ids: dict[str, bytes] = {}
        self._names: dict[bytes, str] = {}  # other named streams
        self._holds: dict[tuple[bytes, str, int], int] = {}
        self._gaps: dict[tuple[bytes, int, int], int] = {}  # (stream, first, last missing version) -> finding
        self._tx: str | None = None
        self._tx_start = 0
        self._tx_assets: set[str] = set()
        self._tx_refs: list[tuple[str, bytes, int]] = []  # (transfer id, account, position) moved in the write
        self.stopped = False
        self.after_seal = 0  # events after the last seal: covered by the hash chains alone

    # The replay -------------------------------------------------------------------

    def run(self, pages: Iterable[list[Row]], progress: Any = None) -> None:
        """Fold the rows; stops at the end of the write that reaches ``to_position`` or ``to_time``."""
        for page in pages:
            self._fold(page)
            if progress is not None:
                progress.update(len(page))
            if self.stopped:
                break
        self._end_of_write()
        self.findings = [f for f in self.findings if f.kind]  # drop retracted ones

    def _fold(self, rows: list[Row]) -> None:
        heads, dirty = self.heads.heads, self.heads.dirty
        accounts, totals, holds, loads = self.accounts, self.totals, self._holds, orjson.loads
        transfers, transfer_ids = self._transfers, self._transfer_ids
        kinds_get, heads_get = KINDS.get, heads.get
        to_position, to_time = self.to_position, self.to_time
        tx = self._tx
        if rows and self.first_position is None:
            self.first_position = rows[0][0]
        for position, stream, version, topic, state, stored, writer in rows:
            if writer != tx:
                self._end_of_write()
                if (to_position is not None and position > to_position) or (
                    to_time is not None and _event_time(state) > to_time
                ):
                    self.stopped = True
                    return
                tx = self._tx = writer
                self._tx_start = position
            if position <= self.last_position:
                self._finding("out_of_order", position, stream, f"position {position} comes after {self.last_position}")
            head = heads_get(stream)
            previous_version, previous = head if head is not None else (0, b"")
            kind = kinds_get(topic, 0)
            if kind == SEAL:
                self._check_seal(position, version, loads(state))
                self.after_seal = -1
            if version == previous_version + 1:
                if (
                    sha256(
                        b"".join((previous, _INT8(position), stream, _INT8(version), topic, b"\x00", state))
                    ).digest()
                    != stored
                ):
                    self._finding(
                        "hash_mismatch",
                        position,
                        stream,
                        f"version {version} does not match its hash: edited, moved or written outside the ledger",
                    )
                heads[stream] = (version, stored)
                dirty.add(stream)
            else:
                self._out_of_sequence(position, stream, version, previous_version)
                if version > previous_version:
                    heads[stream] = (version, stored)  # its hash chains from a version not seen
                    dirty.add(stream)
            self.last_position = position
            self.events += 1
            self.after_seal += 1
            if not kind or kind == SEAL:
                continue
            data = loads(state)
            if kind <= OVERDRAFT_CHANGED:
                if kind == OPENED:
                    accounts[stream] = [
                        data["asset"],
                        0,
                        0,
                        0,
                        0,
                        data["overdraft_limit"],
                        data["system"],
                        data["account_id"],
                    ]
                    totals.setdefault(data["asset"], [0, 0])
                    if version != 1:
                        self._finding("id_reused", position, stream, "opened again")
                    continue
                found = accounts.get(stream)
                if found is None:
                    self._finding("events_missing", position, stream, "moves an account that was never opened")
                    continue
                account = found
                if kind == OVERDRAFT_CHANGED:
                    account[LIMIT] = data["overdraft_limit"]
                    if not account[SYSTEM] and account[PC] - account[PD] - account[QD] < -account[LIMIT]:
                        self._below_limit(account, position, stream)
                    continue
                amount = data["amount"]
                transfer_id = data["transfer_id"]
                asset = account[ASSET]
                sums = totals[asset]
                if kind == DEBITED:
                    account[PD] += amount
                    sums[0] -= amount
                    if not account[SYSTEM] and account[PC] - account[PD] - account[QD] < -account[LIMIT]:
                        self._below_limit(account, position, stream)
                elif kind == CREDITED:
                    account[PC] += amount
                    sums[0] += amount
                elif kind == DEBIT_PENDING:
                    account[QD] += amount
                    sums[1] -= amount
                    self._hold(holds, (stream, transfer_id, 0), amount, position)
                    if not account[SYSTEM] and account[PC] - account[PD] - account[QD] < -account[LIMIT]:
                        self._below_limit(account, position, stream)
                elif kind == CREDIT_PENDING:
                    account[QC] += amount
                    sums[1] += amount
                    self._hold(holds, (stream, transfer_id, 1), amount, position)
                else:
                    debit = kind in (PENDING_DEBIT_POSTED, PENDING_DEBIT_VOIDED)
                    held = holds.pop((stream, transfer_id, 0 if debit else 1), None)
                    released = data["pending_amount"] if kind <= PENDING_CREDIT_POSTED else amount
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
                self._tx_assets.add(asset)
                self._tx_refs.append((transfer_id, stream, position))
            elif kind == TRANSFER_CREATED:
                transfer_id = data["transfer_id"]
                if transfer_id in transfer_ids or version != 1:
                    self._finding("id_reused", position, stream, f"transfer id {transfer_id!r} is used again")
                transfer_ids[transfer_id] = stream
                transfers[stream] = PENDING if data["pending"] else POSTED
            elif kind == TRANSFER_RESOLVED:
                if transfers.get(stream) != PENDING:
                    self._finding("hold_resolved_twice", position, stream, "resolves a transfer that is not pending")
                transfers[stream] = RESOLVED
            else:  # NAMED
                for key, noun in _NAME_FIELDS.items():
                    if key in data:
                        self._names[stream] = f"{noun} {data[key]}" + (
                            f" {data['asset']}" if noun == "fee rule" else ""
                        )
                        break

    def _out_of_sequence(self, position: int, stream: bytes, version: int, previous: int) -> None:
        """A gap in a stream's versions (events deleted), or a version arriving after a later
        one (events reordered): in that case the gap it leaves behind is its own doing."""
        if version > previous:
            kind = "seal_missing" if stream == _SEALS else "events_missing"
            detail = f"versions {previous + 1} to {version - 1} are missing before this one (deleted)"
            self._gaps[(stream, previous + 1, version - 1)] = len(self.findings)
            self._finding(kind, position, stream, detail)
            return
        detail = f"version {version} comes after version {previous} (reordered or duplicated)"
        for (gap_stream, low, high), index in list(self._gaps.items()):
            if gap_stream == stream and low <= version <= high:
                moved_past = self.findings[index].position
                detail = f"version {version} is stored after version {high + 1} (position {moved_past}): reordered"
                if low == high:
                    del self._gaps[(gap_stream, low, high)]
                    self.findings[index] = replace(self.findings[index], kind="")  # not deleted after all
        self._finding("out_of_order", position, stream, detail)

    def _hold(
        self, holds: dict[tuple[bytes, str, int], int], key: tuple[bytes, str, int], amount: int, at: int
    ) -> None:
        if key in holds:
            self._finding("id_reused", at, key[0], f"holds for transfer {key[1]!r} twice")
        holds[key] = amount

    def _below_limit(self, account: list[Any], position: int, stream: bytes) -> None:
        unit = Asset.parse(account[ASSET])
        available = unit.format(account[PC] - account[PD] - account[QD])
        self._finding(
            "below_limit",
            position,
            stream,
            f"available {available} is below its limit of -{unit.format(account[LIMIT])}",
        )

    def _check_seal(self, position: int, number: int, data: dict[str, Any]) -> None:
        root = self.heads.root().hex()
        self.seals.append(SealSeen(number, position, data["through_position"], data["root"]))
        if data["root"] != root or data["through_position"] != self.last_position or data["streams"] != len(self.heads):
            self._finding(
                "seal_mismatch",
                position,
                _SEALS,
                f"covers {data['streams']} streams through position {data['through_position']} with root "
                f"{data['root'][:16]}…; the replay has {len(self.heads)} streams through {self.last_position} "
                f"with root {root[:16]}…: history before it was changed",
            )

    def _end_of_write(self) -> None:
        """Double entry at the end of a write, and every movement naming a real transfer."""
        for asset in self._tx_assets:
            posted, pending = self.totals[asset]
            now = (posted, pending)
            if now != self._baseline.get(asset, (0, 0)):
                before = self._baseline.get(asset, (0, 0))
                moved = sorted({self.subject(s) for _, s, _ in self._tx_refs if self.accounts[s][ASSET] == asset})
                unit = Asset.parse(asset)
                self.findings.append(
                    Finding(
                        "double_entry",
                        self._tx_start,
                        asset,
                        f"the write at position {self._tx_start} leaves {asset} off by posted "
                        f"{unit.format(now[0] - before[0])}, pending {unit.format(now[1] - before[1])} "
                        f"(it moved {', '.join(moved)})",
                    )
                )
                self._baseline[asset] = now  # report each break once, where it happens
        for transfer_id, stream, position in self._tx_refs:
            if transfer_id not in self._transfer_ids:
                self._finding(
                    "unknown_transfer",
                    position,
                    stream,
                    f"moves money for transfer {transfer_id!r}, which does not exist",
                )
        self._tx_assets.clear()
        self._tx_refs.clear()

    # Findings -----------------------------------------------------------------

    def subject(self, stream: bytes) -> str:
        account = self.accounts.get(stream)
        if account is not None:
            return f"account {account[ID]}"
        if stream == _SEALS:
            return "seals"
        if stream in self._transfers:
            for transfer_id, s in self._transfer_ids.items():
                if s == stream:
                    return f"transfer {transfer_id}"
        return self._names.get(stream, f"stream {UUID(bytes=stream)}")

    def _finding(self, kind: str, position: int, stream: bytes, detail: str) -> None:
        self.findings.append(Finding(kind, position, self.subject(stream), detail))

    # Results --------------------------------------------------------------------

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
            for a in self.accounts.values()
        }

    def account_versions(self) -> dict[str, int]:
        return {a[ID]: self.heads.heads[s][0] for s, a in self.accounts.items()}

    def check_expected_seals(self, expected: Iterable[tuple[int, str]]) -> None:
        """Seals an auditor kept from earlier (a report, the Kafka topic) must still be here."""
        seen = {s.number: s for s in self.seals}
        for number, root in expected:
            seal = seen.get(number)
            if seal is None:
                self.findings.append(Finding("seal_missing", None, "seals", f"seal {number} is not in the replay"))
            elif seal.root != root:
                self.findings.append(
                    Finding("seal_mismatch", seal.position, "seals", f"seal {number} has root {seal.root}, not {root}")
                )


def _event_time(state: bytes) -> datetime:
    return datetime.fromisoformat(orjson.loads(state)["timestamp"]["_data_"])


# Sources --------------------------------------------------------------------------

_PAGE_SQL = (
    "SELECT notification_id, uuid_send(originator_id), originator_version, convert_to(topic, 'UTF8'), state, hash, "
    "xmin::text FROM ledger_events WHERE notification_id > %s AND notification_id <= %s "
    "ORDER BY notification_id LIMIT %s"
)


def store_pages(conn: Any, *, head: int, page: int = 20_000) -> Iterator[list[Row]]:
    """The stored rows up to ``head``, a page at a time, each page its own short read (a
    replica cancels long ones). Inserts commit in position order (they hold the table
    lock until they commit), so paging by position misses nothing."""
    after = 0
    with conn.cursor(binary=True) as curs:
        while after < head:
            rows = curs.execute(_PAGE_SQL, (after, head, page)).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]


def file_pages(path: Path, page: int = 20_000) -> Iterator[list[Row]]:
    """An export's events as stored rows (``ledger audit export`` carries them)."""
    from audit.stream import read_lines

    rows: list[Row] = []
    for event in read_lines(path):
        try:
            rows.append(
                (
                    int(event["position"]),
                    UUID(event["ledgerstream"]).bytes,
                    int(event["sequence"]),
                    event["ledgertopic"].encode(),
                    base64.b64decode(event["ledgerstate"]),
                    bytes.fromhex(event["ledgerhash"]),
                    str(event["ledgertx"]),
                )
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}: event {event.get('id')!r} lacks the stored form ({exc})") from None
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
        "streams": len(verifier.heads),
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
