"""The query API's answers, described for its OpenAPI document (``queries.readmodel``
builds them as plain dicts; the contract tests check each against these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ledger.monitors import BALANCES, WHENS
from ledger.wire import Amount, Balance, FeeLeg, Position


class MonitorView(msgspec.Struct):
    id: str
    balance: Literal[BALANCES]  # type: ignore[valid-type]
    when: Literal[WHENS]  # type: ignore[valid-type]
    amount: Amount
    state: Annotated[Literal["clear", "triggered"], msgspec.Meta(description="triggered: past the threshold")]
    since: Annotated[str, msgspec.Meta(description="When it was set or last crossed the threshold")]


class AccountView(msgspec.Struct):
    """An account now, or its balance as it was (``at_position``, ``at``)."""

    id: str
    asset: str
    status: str
    system: bool
    overdraft_limit: Amount
    daily_limit: Amount | None
    monthly_limit: Amount | None
    metadata: dict[str, Any]
    balance: Balance
    monitors: Annotated[list[MonitorView], msgspec.Meta(description="Today's, whatever point in time is asked")]
    position: Position


class Entry(msgspec.Struct):
    transfer_id: str
    kind: str
    side: str
    amount: Amount
    balance_after: Amount
    available_after: Amount
    position: Position
    time: str


class EntryPage(msgspec.Struct):
    """A statement: entries in [from, to), newest first; balances before and at its end."""

    account: str
    entries: list[Entry]
    next_cursor: str | None
    opening_balance: Balance
    closing_balance: Balance
    from_: str | None = msgspec.field(name="from", default=None)
    to: str | None = None


class Leg(msgspec.Struct):
    debit_account: str
    credit_account: str
    amount: Amount


class TransferView(msgspec.Struct):
    id: str
    kind: str
    status: str
    debit_account: str
    credit_account: str
    asset: str
    amount: Amount
    metadata: dict[str, Any]
    time: str
    position: Position
    legs: list[Leg]
    transaction: str | None = None
    fee: FeeLeg | None = None
    fee_for: str | None = None
    reverses: str | None = None
    reversed_amount: Amount | None = None
    posted_amount: Amount | None = None
    expires_at: str | None = None


class PayoutView(msgspec.Struct):
    id: str
    state: str
    account: str
    asset: str
    destination: str
    memo: str | None
    hold: str
    attempts: int
    tx_hash: str | None
    ledger: int | None
    reason: str | None
    amount: Amount
    stuck: str | None  # why the chain worker cannot finish it, for an operator
    created_at: str
    updated_at: str
    position: Position
    cancel_requested: str | None = None  # an operator's reason; the chain worker ends it


class StatusView(msgspec.Struct):
    event_store_head: Position
    relay_position: Position
    read_model_position: Position
    lag: int
    reported_at: str | None


class TransferPage(msgspec.Struct):
    transfers: list[TransferView]
    next_cursor: str | None


class AccountPage(msgspec.Struct):
    accounts: list[AccountView]
    next_cursor: str | None


class BalanceTotals(msgspec.Struct):
    prefix: str
    accounts: int
    totals: dict[str, Balance]  # by asset
    at_position: Position | None


class PayoutRunView(msgspec.Struct):
    id: str
    state: str  # ready, started, paused, completed or cancelled
    rows: int
    attempt: int
    totals: dict[str, Amount]  # by asset: what the rows pay
    counts: dict[str, int]  # rows by state: ready, pending, success, failed
    amounts: dict[str, dict[str, Amount]]  # by row state, by asset
    succeeded: int | None  # when it last completed
    failed: int | None
    created_at: str
    updated_at: str
    position: Position


class PayoutRunRow(msgspec.Struct):
    row: str
    n: int  # its place in the file, from 1
    state: str  # ready, pending, success or failed
    account: str
    amount: Amount
    asset: str
    destination: str
    memo: str | None
    attempt: int  # the attempt its state is from (0: not requested yet)
    payout: str | None  # the payout paying it in that attempt
    reason: str | None  # why it failed (the chain's code, or the ledger's)


class PayoutRunRowPage(msgspec.Struct):
    rows: list[PayoutRunRow]
    next_cursor: str | None
