"""Request bodies to commands: the one place where client JSON is checked.

Unknown fields are rejected (a misspelt optional field must not be silently ignored)
and every message says which field is wrong and why.
"""

from __future__ import annotations

import json
from typing import Any

from stellar_sdk import StrKey

from commands.messages import (
    AccountAction,
    ChangePolicy,
    Deposit,
    ExecuteTransaction,
    OpenAccount,
    PostTransfer,
    RequestPayout,
    ReverseTransfer,
    SetFeeRule,
    TransferBatch,
    TransferFunds,
    VoidTransfer,
)
from ledger.errors import InvalidAmount, InvalidRequest
from ledger.fees import MAX_BASIS_POINTS, OPERATIONS, FeeTerms
from ledger.ids import validate_client_id
from ledger.money import Asset, split_amount
from ledger.transactions import MAX_LEGS

MAX_BODY_BYTES = 64 * 1024
MAX_METADATA_BYTES = 4 * 1024


def _fields(body: Any, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    unknown = sorted(set(body) - required - optional)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}")
    missing = sorted(required - set(body))
    if missing:
        raise InvalidRequest(f"missing field(s): {', '.join(missing)}")
    return body


def _string(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string")
    return value


MAX_METADATA_DEPTH = 8


def _metadata(value: Any) -> dict[str, Any]:
    """A small JSON object: bounded in size and depth, and valid UTF-8 throughout."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object")
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


def open_account(body: Any) -> OpenAccount:
    body = _fields(body, {"id", "asset"}, {"overdraft_limit", "metadata"})
    asset = Asset.parse(body["asset"])
    limit = body.get("overdraft_limit")
    return OpenAccount(
        id=validate_client_id("id", body["id"]),
        asset=str(asset),
        overdraft_limit=0 if limit is None else asset.parse_amount(limit, allow_zero=True),
        metadata=_metadata(body.get("metadata")),
    )


def deposit(body: Any) -> Deposit:
    body = _fields(body, {"id", "account", "amount"}, set())
    return Deposit(
        id=validate_client_id("id", body["id"]),
        account=validate_client_id("account", body["account"]),
        amount=_amount_text(body["amount"]),
    )


MAX_MEMO_BYTES = 28  # a Stellar text memo


def payout(body: Any) -> RequestPayout:
    body = _fields(body, {"id", "account", "amount", "destination"}, {"memo"})
    destination = body["destination"]
    if not isinstance(destination, str) or not StrKey.is_valid_ed25519_public_key(destination):
        raise InvalidRequest("destination must be a Stellar account id (G..., 56 characters, valid checksum)")
    memo = body.get("memo")
    if memo is not None and (not isinstance(memo, str) or len(memo.encode()) > MAX_MEMO_BYTES):
        raise InvalidRequest(f"memo must be a string of at most {MAX_MEMO_BYTES} bytes (UTF-8)")
    return RequestPayout(
        id=validate_client_id("id", body["id"]),
        account=validate_client_id("account", body["account"]),
        amount=_amount_text(body["amount"]),
        destination=destination,
        memo=memo,
    )


MAX_TIMEOUT_SECONDS = 366 * 24 * 3600


def transfer(body: Any) -> TransferFunds:
    body = _fields(
        body, {"id", "debit_account", "credit_account", "amount"}, {"metadata", "pending", "timeout_seconds"}
    )
    pending = body.get("pending", False)
    if not isinstance(pending, bool):
        raise InvalidRequest("pending must be true or false")
    timeout = body.get("timeout_seconds")
    if timeout is not None:
        if not pending:
            raise InvalidRequest("timeout_seconds applies only to a pending transfer")
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
            raise InvalidRequest(f"timeout_seconds must be an integer from 1 to {MAX_TIMEOUT_SECONDS}")
    return TransferFunds(
        id=validate_client_id("id", body["id"]),
        debit_account=validate_client_id("debit_account", body["debit_account"]),
        credit_account=validate_client_id("credit_account", body["credit_account"]),
        amount=_amount_text(body["amount"]),
        metadata=_metadata(body.get("metadata")),
        pending=pending,
        timeout_seconds=timeout,
    )


def post_transfer(transfer_id: str, body: Any) -> PostTransfer:
    body = _fields({} if body is None else body, set(), {"amount"})
    amount = body.get("amount")
    return PostTransfer(
        id=validate_client_id("transfer id", transfer_id),
        amount=None if amount is None else _amount_text(amount),
    )


def void_transfer(transfer_id: str, body: Any) -> VoidTransfer:
    _fields({} if body is None else body, set(), set())
    return VoidTransfer(id=validate_client_id("transfer id", transfer_id))


def _amount_text(value: Any) -> str:
    """Shape check only: the scale check needs the account's asset and happens later."""
    whole, fraction = split_amount(value)
    if whole.strip("0") == "" and fraction.strip("0") == "":
        raise InvalidAmount("amount must be greater than zero")
    return str(value)


POLICY_FIELDS = {"overdraft_limit", "daily_limit", "monthly_limit"}


def change_policy(account_id: str, body: Any) -> ChangePolicy:
    body = _fields(body, set(), POLICY_FIELDS)
    if not body:
        raise InvalidRequest(f"send at least one of {', '.join(sorted(POLICY_FIELDS))}")
    changes: dict[str, str | None] = {}
    for name, value in body.items():
        if value is None and name != "overdraft_limit":
            changes[name] = None  # no limit
            continue
        split_amount(value)  # shape only; the scale is the account's
        changes[name] = value
    return ChangePolicy(account=validate_client_id("account id", account_id), changes=changes)


def account_action(action: str) -> Any:
    def parse(account_id: str, body: Any) -> AccountAction:
        _fields({} if body is None else body, set(), set())
        return AccountAction(account=validate_client_id("account id", account_id), action=action)

    return parse


def _transfers(items: Any, limit: int) -> tuple[TransferFunds, ...]:
    """A list of transfers, every one well formed, with distinct ids."""
    if not isinstance(items, list) or not 1 <= len(items) <= limit:
        raise InvalidRequest(f"transfers must be a list of 1 to {limit} transfers")
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(transfer(item))
        except InvalidRequest as exc:
            raise type(exc)(f"transfers[{index}]: {exc.detail}") from None
    if len({t.id for t in parsed}) != len(parsed):
        raise InvalidRequest("transfers must have distinct ids")
    return tuple(parsed)


def transaction(body: Any) -> ExecuteTransaction:
    body = _fields(body, {"id", "transfers"}, set())
    return ExecuteTransaction(
        id=validate_client_id("id", body["id"]), transfers=_transfers(body["transfers"], MAX_LEGS)
    )


MAX_BATCH = 100


def transfer_batch(body: Any) -> TransferBatch:
    """Every transfer must be well formed, or the whole batch is refused: bad input writes nothing."""
    body = _fields(body, {"transfers"}, set())
    return TransferBatch(transfers=_transfers(body["transfers"], MAX_BATCH))


def reverse_transfer(transfer_id: str, body: Any) -> ReverseTransfer:
    body = _fields(body, {"id"}, {"amount"})
    amount = body.get("amount")
    return ReverseTransfer(
        id=validate_client_id("id", body["id"]),
        transfer=validate_client_id("transfer id", transfer_id),
        amount=None if amount is None else _amount_text(amount),
    )


def fee_rule(body: Any) -> SetFeeRule:
    body = _fields(body, {"asset", "operation", "payer"}, {"basis_points", "fixed", "min", "max", "active"})
    asset = Asset.parse(body["asset"])
    if body["operation"] not in OPERATIONS:
        raise InvalidRequest(f"operation must be one of {', '.join(OPERATIONS)}")
    basis_points = body.get("basis_points", 0)
    if not isinstance(basis_points, int) or isinstance(basis_points, bool):
        raise InvalidRequest(f"basis_points must be an integer from 0 to {MAX_BASIS_POINTS}")
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise InvalidRequest("active must be true or false")
    maximum = body.get("max")
    return SetFeeRule(
        asset=str(asset),
        operation=body["operation"],
        terms=FeeTerms(
            basis_points=basis_points,
            fixed=asset.parse_amount(body.get("fixed", "0"), allow_zero=True),
            minimum=asset.parse_amount(body.get("min", "0"), allow_zero=True),
            maximum=None if maximum is None else asset.parse_amount(maximum, allow_zero=True),
            payer=_string("payer", body["payer"]),
            active=active,
        ),
    )
