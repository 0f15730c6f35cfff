"""Request bodies to commands: each checked against its msgspec struct
(``commands.request_bodies``, which also gives the OpenAPI document its request
schemas, so what the API accepts and what it publishes cannot drift apart), then read
into a command (``commands.messages``).

Unknown fields are rejected (a misspelt optional field must not be silently ignored)
and every message says which field is wrong and why: where the schema refuses a value,
the field's own domain check (client ids, amounts, assets) names the problem with its
own code, so the messages stay those of the domain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

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
from commands.request_bodies import (
    MAX_BATCH,
    MAX_MEMO_BYTES,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_TIMEOUT_SECONDS,
    Body,
    CancelPayoutBody,
    DepositBody,
    EmptyBody,
    FeeRuleBody,
    MonitorBody,
    OpenAccountBody,
    PayoutBody,
    PolicyBody,
    PostBody,
    ReassignBody,
    RemoveMonitorBody,
    ReverseBody,
    SweepBody,
    TransactionBody,
    TransferBatchBody,
    TransferBody,
)
from ledger.errors import InvalidAmount, InvalidRequest
from ledger.fees import MAX_BASIS_POINTS, OPERATIONS, PAYERS, FeeTerms
from ledger.ids import CHAIN_DEPOSIT_ID, CLIENT_ID, validate_client_id
from ledger.money import Asset, split_amount
from ledger.payout_runs import row_of_payout
from ledger.transactions import MAX_LEGS
from runtime import bodies

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
