"""The command API's answers, described for its OpenAPI document.

``commands.answers`` builds them as plain dicts (the write path's speed); these structs
say what they hold, and the contract tests (schemathesis, on the running stack) check
every answer against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ledger.monitors import BALANCES, WHENS
from ledger.wire import Amount, Balance, FeeLeg, Position

Balances = Annotated[
    dict[str, Balance], msgspec.Meta(description="The moved client accounts' balances after it, by account id")
]


class AccountAnswer(msgspec.Struct):
    id: str
    asset: str
    status: str
    overdraft_limit: Amount
    daily_limit: Amount | None
    monthly_limit: Amount | None
    metadata: dict[str, Any]
    position: Position


class MonitorAnswer(msgspec.Struct):
    id: str
    account: str
    asset: str
    balance: Literal[BALANCES]  # type: ignore[valid-type]
    when: Literal[WHENS]  # type: ignore[valid-type]
    amount: Amount
    state: Annotated[
        Literal["clear", "triggered", "removed"],
        msgspec.Meta(description="triggered: the balance is past the threshold now"),
    ]
    position: Position


class Leg(msgspec.Struct, kw_only=True):
    """A transaction's leg: a transfer, without the position the transaction gives once."""

    id: str
    status: str
    debit_account: str
    credit_account: str
    amount: Amount
    asset: str
    metadata: dict[str, Any]
    fee: FeeLeg | None = None
    posted_amount: Amount | None = None
    expires_at: str | None = None


class TransferAnswer(Leg, kw_only=True):
    position: Position
    reverses: str | None = None
    reversed_amount: Amount | None = None
    fee_for: str | None = None
    balances: Balances | None = None


class TransactionAnswer(msgspec.Struct):
    id: str
    transfers: list[Leg]
    position: Position
    balances: Balances | None = None


class BatchResult(msgspec.Struct):
    """What ``POST /v1/transfers`` would have answered for this transfer."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


class BatchAnswer(msgspec.Struct):
    results: list[BatchResult]


class DepositAnswer(msgspec.Struct):
    id: str
    status: str
    account: str
    amount: Amount
    asset: str
    position: Position
    balances: Balances | None = None


class FeeRuleAnswer(msgspec.Struct):
    asset: str
    operation: str
    basis_points: int
    fixed: Amount
    min: Amount
    max: Amount | None
    payer: str
    active: bool
    fee_account: str
    position: Position


class PayoutAnswer(msgspec.Struct):
    id: str
    state: str
    account: str
    amount: Amount
    fee: Amount  # held with it and charged when the chain confirms (a recipient's fee comes out of amount)
    asset: str
    destination: str
    memo: str | None
    hold_id: str
    attempts: int
    tx_hash: str | None
    ledger: int | None
    reason: str | None
    stuck: str | None  # why the chain worker cannot finish it, for an operator
    cancel_requested: str | None  # an operator's reason; the chain worker ends it
    position: Position
    balances: Balances | None = None


class PayoutRunAnswer(msgspec.Struct):
    id: str
    state: str  # ready, started, paused, completed or cancelled
    rows: int
    attempt: int  # 1, and one more for each retry
    totals: dict[str, Amount]  # by asset: what the rows pay
    position: Position
