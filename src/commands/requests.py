"""Request bodies to commands: described once, as msgspec structs, and checked against
that description. The same structs give the OpenAPI document its request schemas, so
what the API accepts and what it publishes cannot drift apart.

Unknown fields are rejected (a misspelt optional field must not be silently ignored)
and every message says which field is wrong and why: where the schema refuses a value,
the field's own domain check (client ids, amounts, assets) names the problem with its
own code, so the messages stay those of the domain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from stellar_sdk import StrKey

from commands.messages import (
    AccountAction,
    CancelPayout,
    ChangePolicy,
    Deposit,
    ExecuteTransaction,
    OpenAccount,
    PayoutRunAction,
    PostTransfer,
    ReassignSuspense,
    RemoveMonitor,
    RequestPayout,
    ReverseTransfer,
    SetFeeRule,
    SetMonitor,
    SweepFees,
    TransferBatch,
    TransferFunds,
    VoidTransfer,
)
from ledger.errors import InvalidAmount, InvalidRequest
from ledger.fees import MAX_BASIS_POINTS, OPERATIONS, PAYERS, FeeTerms
from ledger.ids import CHAIN_DEPOSIT_ID, CLIENT_ID, validate_client_id
from ledger.money import AMOUNT_PATTERN, ASSET_PATTERN, Asset, split_amount
from ledger.monitors import AVAILABLE, BALANCES, WHENS
from ledger.payout_runs import MAX_ROWS, row_of_payout
from ledger.transactions import MAX_LEGS
from runtime import bodies

MAX_BODY_BYTES = 64 * 1024
MAX_METADATA_BYTES = 4 * 1024
MAX_METADATA_DEPTH = 8
MAX_MEMO_BYTES = 28  # a Stellar text memo
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600
MAX_BATCH = 100

ClientId = Annotated[
    str,
    msgspec.Meta(
        pattern=CLIENT_ID.pattern,
        description="1-128 characters from [A-Za-z0-9._:-], starting with a letter or digit; chosen by the client",
        examples=["acct-alice"],
    ),
]
AmountText = Annotated[
    str,
    msgspec.Meta(
        pattern=AMOUNT_PATTERN,
        description="A decimal string in major units, at most the asset's scale of fractional digits",
        examples=["12.34"],
    ),
]
AssetText = Annotated[
    str, msgspec.Meta(pattern=ASSET_PATTERN, description="CODE/SCALE, SCALE 0..18", examples=["USD/2"])
]
Metadata = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=f"Any JSON object, at most {MAX_METADATA_BYTES} bytes and {MAX_METADATA_DEPTH} levels deep",
        examples=[{"order": "o-17"}],
    ),
]
StellarAccount = Annotated[
    str,
    msgspec.Meta(pattern="^G[A-Z2-7]{55}$", description="A Stellar account id (G..., 56 characters, valid checksum)"),
]


class Body(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A request body: a JSON object with exactly the fields its struct names."""


class OpenAccountBody(Body):
    id: ClientId
    asset: AssetText
    overdraft_limit: AmountText | None = None
    metadata: Metadata | None = None


class DepositBody(Body):
    id: ClientId
    account: ClientId
    amount: AmountText


class PayoutBody(Body):
    id: ClientId
    account: ClientId
    amount: AmountText
    destination: StellarAccount
    memo: Annotated[str, msgspec.Meta(max_length=MAX_MEMO_BYTES, description="A Stellar text memo")] | None = None


class TransferBody(Body):
    id: ClientId
    debit_account: ClientId
    credit_account: ClientId
    amount: AmountText
    metadata: Metadata | None = None
    pending: Annotated[bool, msgspec.Meta(description="Hold the amount until posted or voided")] = False
    timeout_seconds: (
        Annotated[
            int,
            msgspec.Meta(ge=1, le=MAX_TIMEOUT_SECONDS, description="A pending transfer's time to live, in seconds"),
        ]
        | None
    ) = None


class PostBody(Body):
    amount: (
        Annotated[AmountText, msgspec.Meta(description="Post less than was held; leave out to post it all")] | None
    ) = None


class CancelPayoutBody(Body):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Why, for the audit trail")] = (
        "cancelled by an operator"
    )


class ReassignBody(Body):
    deposit: Annotated[
        str,
        msgspec.Meta(
            pattern=CHAIN_DEPOSIT_ID.pattern,
            description="The chain deposit's transfer id ($stellar.<Stellar payment id>), credited to suspense",
            examples=["$stellar.4294971393"],
        ),
    ]
    account: ClientId


class SweepBody(Body):
    id: ClientId
    asset: AssetText
    account: ClientId
    amount: Annotated[AmountText, msgspec.Meta(description="Omitted: all the fee account has available")] | None = None


class PayoutRunRowBody(Body):
    id: ClientId
    account: ClientId
    amount: AmountText
    destination: StellarAccount
    memo: Annotated[str, msgspec.Meta(max_length=MAX_MEMO_BYTES)] | None = None


class PayoutRunBody(Body):
    """The JSON form of a run's file (``commands.run_files`` checks it row by row)."""

    id: Annotated[str, msgspec.Meta(pattern=CLIENT_ID.pattern, max_length=64)]
    rows: Annotated[list[PayoutRunRowBody], msgspec.Meta(min_length=1, max_length=MAX_ROWS)]


class EmptyBody(Body):
    """Void, freeze, unfreeze and close take no fields (and may have no body at all)."""


class PolicyBody(Body):
    """At least one field; null removes a daily or monthly limit."""

    overdraft_limit: AmountText | msgspec.UnsetType = msgspec.UNSET
    daily_limit: AmountText | None | msgspec.UnsetType = msgspec.UNSET
    monthly_limit: AmountText | None | msgspec.UnsetType = msgspec.UNSET


class MonitorBody(Body):
    id: Annotated[ClientId, msgspec.Meta(description="The monitor's id, one per account: set again to change it")]
    account: ClientId
    when: Literal[WHENS]  # type: ignore[valid-type]
    amount: Annotated[AmountText, msgspec.Meta(description="The threshold: strictly below or above it is past it")]
    balance: Literal[BALANCES] = AVAILABLE  # type: ignore[valid-type]


class RemoveMonitorBody(Body):
    account: ClientId


class TransactionBody(Body):
    id: ClientId
    transfers: Annotated[list[TransferBody], msgspec.Meta(min_length=1, max_length=MAX_LEGS)]


class TransferBatchBody(Body):
    transfers: Annotated[list[TransferBody], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class ReverseBody(Body):
    id: ClientId
    amount: AmountText | None = None


class FeeRuleBody(Body):
    asset: AssetText
    operation: Literal[OPERATIONS]  # type: ignore[valid-type]
    payer: Literal[PAYERS]  # type: ignore[valid-type]
    basis_points: Annotated[int, msgspec.Meta(ge=0, le=MAX_BASIS_POINTS)] = 0
    fixed: AmountText = "0"
    min: AmountText = "0"
    max: AmountText | None = None
    active: bool = True


# What a refused field must be, where the schema's own words would be less clear.
_EXPECTED = {
    "pending": "true or false",
    "active": "true or false",
    "timeout_seconds": f"an integer from 1 to {MAX_TIMEOUT_SECONDS}",
    "basis_points": f"an integer from 0 to {MAX_BASIS_POINTS}",
    "metadata": "a JSON object",
    "memo": f"a string of at most {MAX_MEMO_BYTES} bytes (UTF-8)",
    "destination": "a Stellar account id (G..., 56 characters, valid checksum)",
    "operation": f"one of {', '.join(OPERATIONS)}",
    "payer": f"one of {', '.join(PAYERS)}",
}
_AMOUNT_FIELDS = {"amount", "overdraft_limit", "daily_limit", "monthly_limit", "fixed", "min", "max"}
_ID_FIELDS = {"id", "account", "debit_account", "credit_account"}

B = TypeVar("B", bound=Body)


def decode(kind: type[B], body: Any) -> B:
    """``body`` (parsed, strict JSON) as a ``kind``, or the clearest error we can name."""
    return bodies.convert(kind, body, _explain)


def _explain(kind: type[Body], field: str, value: Any) -> None:
    """The domain's own error for a field the schema refused: its code and its words."""
    if field in _ID_FIELDS:
        validate_client_id(field, value)
    elif field in _AMOUNT_FIELDS:
        split_amount(value)
    elif field == "asset":
        Asset.parse(value)
    elif field == "transfers":
        limit = MAX_LEGS if kind is TransactionBody else MAX_BATCH
        raise InvalidRequest(f"transfers must be a list of 1 to {limit} transfers")
    elif field in _EXPECTED:
        raise InvalidRequest(f"{field} must be {_EXPECTED[field]}")


def _metadata(value: dict[str, Any] | None) -> dict[str, Any]:
    """A small JSON object: bounded in size and depth, and valid UTF-8 throughout."""
    if value is None:
        return {}
    if _depth(value) > MAX_METADATA_DEPTH:
        raise InvalidRequest(f"metadata must be nested at most {MAX_METADATA_DEPTH} levels deep")
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest("metadata contains text that is not valid Unicode (a lone surrogate)") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidRequest(f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _utf8(text: str, field: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{field} contains text that is not valid Unicode (a lone surrogate)") from None


def _amount_text(value: str) -> str:
    """Shape check only: the scale check needs the account's asset and happens later."""
    whole, fraction = split_amount(value)
    if whole.strip("0") == "" and fraction.strip("0") == "":
        raise InvalidAmount("amount must be greater than zero")
    return value


def open_account(body: Any) -> OpenAccount:
    parsed = decode(OpenAccountBody, body)
    asset = Asset.parse(parsed.asset)
    limit = parsed.overdraft_limit
    return OpenAccount(
        id=validate_client_id("id", parsed.id),
        asset=str(asset),
        overdraft_limit=0 if limit is None else asset.parse_amount(limit, allow_zero=True),
        metadata=_metadata(parsed.metadata),
    )


def deposit(body: Any) -> Deposit:
    parsed = decode(DepositBody, body)
    return Deposit(
        id=validate_client_id("id", parsed.id),
        account=validate_client_id("account", parsed.account),
        amount=_amount_text(parsed.amount),
    )


def payout(body: Any) -> RequestPayout:
    parsed = decode(PayoutBody, body)
    if not StrKey.is_valid_ed25519_public_key(parsed.destination):
        raise InvalidRequest(f"destination must be {_EXPECTED['destination']}")
    if parsed.memo is not None and len(_utf8(parsed.memo, "memo")) > MAX_MEMO_BYTES:
        raise InvalidRequest(f"memo must be {_EXPECTED['memo']}")
    return RequestPayout(
        id=validate_client_id("id", parsed.id),
        account=validate_client_id("account", parsed.account),
        amount=_amount_text(parsed.amount),
        destination=parsed.destination,
        memo=parsed.memo,
    )


def _transfer(parsed: TransferBody) -> TransferFunds:
    if parsed.timeout_seconds is not None and not parsed.pending:
        raise InvalidRequest("timeout_seconds applies only to a pending transfer")
    return TransferFunds(
        id=validate_client_id("id", parsed.id),
        debit_account=validate_client_id("debit_account", parsed.debit_account),
        credit_account=validate_client_id("credit_account", parsed.credit_account),
        amount=_amount_text(parsed.amount),
        metadata=_metadata(parsed.metadata),
        pending=parsed.pending,
        timeout_seconds=parsed.timeout_seconds,
    )


def transfer(body: Any) -> TransferFunds:
    return _transfer(decode(TransferBody, body))


def post_transfer(transfer_id: str, body: Any) -> PostTransfer:
    parsed = decode(PostBody, {} if body is None else body)
    return PostTransfer(
        id=validate_client_id("transfer id", transfer_id),
        amount=None if parsed.amount is None else _amount_text(parsed.amount),
    )


def void_transfer(transfer_id: str, body: Any) -> VoidTransfer:
    decode(EmptyBody, {} if body is None else body)
    return VoidTransfer(id=validate_client_id("transfer id", transfer_id))


def change_policy(account_id: str, body: Any) -> ChangePolicy:
    parsed = decode(PolicyBody, body)
    changes = {
        name: value for name in PolicyBody.__struct_fields__ if (value := getattr(parsed, name)) is not msgspec.UNSET
    }
    for value in changes.values():
        if value is not None:
            split_amount(value)  # the shape, fully (a pattern lets a trailing newline by); the scale is the account's
    if not changes:
        raise InvalidRequest(f"send at least one of {', '.join(PolicyBody.__struct_fields__)}")
    return ChangePolicy(account=validate_client_id("account id", account_id), changes=changes)


def set_monitor(body: Any) -> SetMonitor:
    parsed = decode(MonitorBody, body)
    split_amount(parsed.amount)  # the shape, fully; the scale is the account's
    return SetMonitor(
        id=validate_client_id("id", parsed.id),
        account=validate_client_id("account", parsed.account),
        balance=parsed.balance,
        when=parsed.when,
        amount=parsed.amount,
    )


def remove_monitor(monitor_id: str, body: Any) -> RemoveMonitor:
    parsed = decode(RemoveMonitorBody, body)
    return RemoveMonitor(
        id=validate_client_id("monitor id", monitor_id), account=validate_client_id("account", parsed.account)
    )


def cancel_payout(payout_id: str, body: Any) -> CancelPayout:
    """A client's payout, or a run's (``RUN$ROW$ATTEMPT``, ``ledger.payout_runs.row_payout_id``)."""
    parsed = decode(CancelPayoutBody, {} if body is None else body)
    names = row_of_payout(payout_id)
    if names is None:
        validate_client_id("payout id", payout_id)
    elif not (CLIENT_ID.fullmatch(names[0]) and CLIENT_ID.fullmatch(names[1])):
        raise InvalidRequest("payout id must be a client's id or a run's payout id (RUN$ROW$ATTEMPT)")
    return CancelPayout(id=payout_id, reason=parsed.reason)


def reassign_suspense(body: Any) -> ReassignSuspense:
    parsed = decode(ReassignBody, body)
    if not CHAIN_DEPOSIT_ID.fullmatch(parsed.deposit):
        raise InvalidRequest("deposit must be a chain deposit's transfer id ($stellar.<payment id>)")
    return ReassignSuspense(deposit=parsed.deposit, account=validate_client_id("account", parsed.account))


def sweep_fees(body: Any) -> SweepFees:
    parsed = decode(SweepBody, body)
    return SweepFees(
        id=validate_client_id("id", parsed.id),
        asset=str(Asset.parse(parsed.asset)),
        account=validate_client_id("account", parsed.account),
        amount=None if parsed.amount is None else _amount_text(parsed.amount),
    )


def payout_run_action(action: str) -> Callable[[str, Any], PayoutRunAction]:
    def parse(run_id: str, body: Any) -> PayoutRunAction:
        decode(EmptyBody, {} if body is None else body)
        return PayoutRunAction(run=validate_client_id("run id", run_id), action=action)

    return parse


def account_action(action: str) -> Callable[[str, Any], AccountAction]:
    def parse(account_id: str, body: Any) -> AccountAction:
        decode(EmptyBody, {} if body is None else body)
        return AccountAction(account=validate_client_id("account id", account_id), action=action)

    return parse


def _transfers(items: list[TransferBody]) -> tuple[TransferFunds, ...]:
    """Every transfer well formed, with distinct ids."""
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(_transfer(item))
        except InvalidRequest as exc:
            raise type(exc)(f"transfers[{index}]: {exc.detail}") from None
    if len({t.id for t in parsed}) != len(parsed):
        raise InvalidRequest("transfers must have distinct ids")
    return tuple(parsed)


def transaction(body: Any) -> ExecuteTransaction:
    parsed = decode(TransactionBody, body)
    return ExecuteTransaction(id=validate_client_id("id", parsed.id), transfers=_transfers(parsed.transfers))


def transfer_batch(body: Any) -> TransferBatch:
    """Every transfer must be well formed, or the whole batch is refused: bad input writes nothing."""
    return TransferBatch(transfers=_transfers(decode(TransferBatchBody, body).transfers))


def reverse_transfer(transfer_id: str, body: Any) -> ReverseTransfer:
    parsed = decode(ReverseBody, body)
    return ReverseTransfer(
        id=validate_client_id("id", parsed.id),
        transfer=validate_client_id("transfer id", transfer_id),
        amount=None if parsed.amount is None else _amount_text(parsed.amount),
    )


def fee_rule(body: Any) -> SetFeeRule:
    parsed = decode(FeeRuleBody, body)
    asset = Asset.parse(parsed.asset)
    return SetFeeRule(
        asset=str(asset),
        operation=parsed.operation,
        terms=FeeTerms(
            basis_points=parsed.basis_points,
            fixed=asset.parse_amount(parsed.fixed, allow_zero=True),
            minimum=asset.parse_amount(parsed.min, allow_zero=True),
            maximum=None if parsed.max is None else asset.parse_amount(parsed.max, allow_zero=True),
            payer=parsed.payer,
            active=parsed.active,
        ),
    )
