"""The one comparison of the MongoDB read model with what the event store says.

Two commands make it: ``ledger projections verify`` (an operator's check after a
deployment or a rebuild) and ``ledger audit verify`` (an auditor's, beside the hash
chains). What the event store says comes from a replay, and which replay is the
caller's: the operator's folds with the domain's own table of movements
(``projectors.replay``), the auditor's keeps an independent arithmetic on purpose
(``audit.book_check``). So the comparison takes plain expected states, and a replay that
knows less (the auditor's has no transfers, statuses or limits) leaves those out.

The store may keep moving while the read model is read. An account the read model shows
past the replay's version is then counted as moved on, not as a difference, and the
checks that need one moment of the whole read model (transfer states, entry counts, the
per-asset sums) are made only when no account or transfer was written after the replay.
The auditor cannot tell: it may read a replica behind the primary that the projector
follows, so its comparison always allows for a store that moved on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from contracts.readmodel import ACCOUNTS, ENTRIES, TRANSFERS, wait_for_position, watermark
from ledger.accounts import BALANCE_FIELDS

Limits = tuple[int | None, int | None]  # daily, monthly


@dataclass(frozen=True)
class ExpectedAccount:
    """An account as a replay left it; ``None`` where that replay does not know."""

    asset: str
    balances: tuple[int, ...]  # in BALANCE_FIELDS order
    version: int
    status: str | None = None
    overdraft_limit: int | None = None
    limits: Limits | None = None
    movements: int | None = None  # one read-model entry each


@dataclass(frozen=True)
class Expected:
    """What a replay of the store up to ``position`` says the read model must hold."""

    accounts: Mapping[str, ExpectedAccount]
    position: int
    transfers: Mapping[str, str] | None = None  # transfer id -> status, when the replay knows


@dataclass(frozen=True)
class Difference:
    subject: str  # "account bob", "transfer t-1", "asset USD", "read model"
    detail: str
    behind: bool = False  # the read model had not reached the replay's position

    def __str__(self) -> str:
        return f"{self.subject}: {self.detail}"


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)
    compared: int = 0  # accounts compared at the replay's version
    whole: bool = False  # transfers, entries and sums were compared too (nothing they show was written since)
    # account id -> the position the read model says it was last moved (or opened) at, past the replay
    ahead: dict[str, int] = field(default_factory=dict)

    @property
    def moved_since(self) -> int:
        """Accounts the read model shows past the replay while the store moved."""
        return len(self.ahead)


def compare_read_model(
    db: Database[Any], expected: Expected, store_moved: Callable[[], bool] | None, *, wait_seconds: float = 0.0
) -> Comparison:
    """Compare ``db`` with ``expected``. ``store_moved`` says whether the store the projector
    follows has had an account or transfer written after the replay; it is asked after the
    read model is read, to tell a store that moved on from a read model ahead of its store.
    Without it the store is taken to have moved on.

    An account taken as moved on must say so consistently: its document's position is past
    the replay, and the read model's watermark reaches it (waited for), so raising an
    edited document's version does not hide it."""
    if not wait_for_position(db, expected.position, wait_seconds):
        detail = f"has applied events up to {watermark(db)}; the replay reached {expected.position}"
        return Comparison([Difference("read model", detail, behind=True)])
    projection = {"version": 1, "position": 1, "opened_position": 1, "asset": 1, "status": 1, "overdraft_limit": 1}
    projection |= {name: 1 for name in (*BALANCE_FIELDS, "daily_limit", "monthly_limit")}
    docs = list(db[ACCOUNTS].find({}, projection))
    entries = transfers = None
    if any(a.movements is not None for a in expected.accounts.values()):
        # One pass over the entries: a count per account would scan them once per account
        # on a server that counts without its index (nx-27017 does).
        entries = Counter(doc.get("account") for doc in db[ENTRIES].find({}, {"account": 1, "_id": 0}))
    if expected.transfers is not None:
        transfers = {doc["_id"]: doc.get("status") for doc in db[TRANSFERS].find({}, {"status": 1})}
    still = store_moved is not None and not store_moved()
    comparison = compare_accounts(expected, docs, store_moved=not still)
    if comparison.ahead:
        wait_for_position(db, max(comparison.ahead.values()), max(wait_seconds, 1.0))
        applied = watermark(db)
        for account_id, position in sorted(comparison.ahead.items()):
            if position > applied:
                detail = f"says it moved at position {position}, past all the read model has applied ({applied})"
                comparison.differences.append(Difference(f"account {account_id}", detail))
                del comparison.ahead[account_id]
    if still:
        comparison.whole = True
        comparison.differences += unbalanced_assets(docs)
        if entries is not None:
            comparison.differences += compare_entries(expected.accounts, entries)
        if transfers is not None and expected.transfers is not None:
            comparison.differences += compare_transfers(expected.transfers, transfers)
    return comparison


def compare_accounts(expected: Expected, docs: Iterable[Mapping[str, Any]], *, store_moved: bool) -> Comparison:
    """Each account document against the replay's account of the same id. Accounts the
    read model shows past the replay are left in ``ahead`` for the watermark to vouch for."""
    comparison = Comparison()
    waiting = dict(expected.accounts)
    for doc in docs:
        account_id = doc["_id"]
        subject = f"account {account_id}"
        wanted = waiting.pop(account_id, None)
        if wanted is None:
            opened = _amount(doc.get("opened_position"))
            if store_moved and isinstance(opened, int) and opened > expected.position:
                comparison.ahead[account_id] = opened
            else:
                comparison.differences.append(Difference(subject, "is in the read model but not in the event store"))
            continue
        version, position = _amount(doc.get("version")), _amount(doc.get("position"))
        if store_moved and isinstance(version, int) and version > wanted.version:
            if isinstance(position, int) and position > expected.position:
                comparison.ahead[account_id] = position
                continue
            detail = (
                f"is at version {version} in the read model, past the replay's {wanted.version}, "
                f"though it says it last moved at position {position}, which the replay read"
            )
            comparison.differences.append(Difference(subject, detail))
            continue
        comparison.compared += 1
        if version != wanted.version:
            detail = f"is at version {version} in the read model; the event store has {wanted.version}"
            comparison.differences.append(Difference(subject, detail))
            continue
        wrong = [f"{name} {shown} (replay: {want})" for name, shown, want in _fields(doc, wanted) if shown != want]
        if wrong:
            comparison.differences.append(Difference(subject, "the read model shows " + ", ".join(wrong)))
    comparison.differences += [Difference(f"account {a}", "is missing from the read model") for a in sorted(waiting)]
    return comparison


def _fields(doc: Mapping[str, Any], wanted: ExpectedAccount) -> Iterable[tuple[str, Any, Any]]:
    """Each compared field as (name, what the read model shows, what the replay gives); a
    field missing from the document shows as ``None``, a difference like any other."""
    yield "asset", doc.get("asset"), wanted.asset
    for index, name in enumerate(BALANCE_FIELDS):
        yield name, _amount(doc.get(name)), wanted.balances[index]
    if wanted.status is not None:
        yield "status", doc.get("status"), wanted.status
    if wanted.overdraft_limit is not None:
        yield "overdraft_limit", _amount(doc.get("overdraft_limit")), wanted.overdraft_limit
    if wanted.limits is not None:
        yield "limits", (_amount(doc.get("daily_limit")), _amount(doc.get("monthly_limit"))), wanted.limits


def _amount(shown: Any) -> int | str | None:
    """Minor units as the projector stores them (a string of digits); anything else is
    shown as it is, so it differs from every replayed amount instead of failing the check."""
    try:
        return None if shown is None else int(shown)
    except (TypeError, ValueError):
        return repr(shown)


def compare_entries(accounts: Mapping[str, ExpectedAccount], entries: Mapping[str, int]) -> list[Difference]:
    """One read-model entry per movement."""
    return [
        Difference(f"account {account_id}", f"has {entries.get(account_id, 0)} entries (replay: {account.movements})")
        for account_id, account in accounts.items()
        if account.movements is not None and entries.get(account_id, 0) != account.movements
    ]


def compare_transfers(expected: Mapping[str, str], shown: Mapping[str, str]) -> list[Difference]:
    found = []
    for transfer_id, status in sorted(expected.items()):
        if transfer_id not in shown:
            found.append(Difference(f"transfer {transfer_id}", "is missing from the read model"))
        elif shown[transfer_id] != status:
            detail = f"the read model says {shown[transfer_id]} (replay: {status})"
            found.append(Difference(f"transfer {transfer_id}", detail))
    found += [
        Difference(f"transfer {t}", "is in the read model but not in the event store")
        for t in sorted(set(shown) - set(expected))
    ]
    return found


def unbalanced_assets(docs: Iterable[Mapping[str, Any]]) -> list[Difference]:
    """Double entry: per asset, posted debits equal posted credits, and pending ones too."""
    totals: dict[str, list[int]] = {}
    for doc in docs:
        sums = totals.setdefault(str(doc.get("asset")), [0, 0, 0, 0])
        for index, name in enumerate(BALANCE_FIELDS):
            amount = _amount(doc.get(name))
            sums[index] += amount if isinstance(amount, int) else 0  # a garbled one is named by compare_accounts
    return [
        Difference(
            f"asset {asset}",
            f"posted debits {s[0]} vs credits {s[1]}, pending debits {s[2]} vs credits {s[3]}",
        )
        for asset, s in sorted(totals.items())
        if s[0] != s[1] or s[2] != s[3]
    ]
