"""The answers to commands: plain dicts, as the HTTP API returns them.

A command that is retried (same id, same body) is answered from what its first run
recorded, so every builder here takes the aggregate as that run left it and the position
of that run's events. ``position`` may still be a lazy ``unit_of_work.Position``: the
group runner resolves it once the group is saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from commands.unit_of_work import Position
from ledger.accounts import OPEN, Account, Balance
from ledger.fees import FeeRule
from ledger.ids import fee_account_id, fee_transfer_id
from ledger.money import Asset
from ledger.monitors import Monitor
from ledger.payouts import Payout
from ledger.transfers import Transfer


@lru_cache(maxsize=1024)
def _unit(asset: str) -> Asset:
    """An asset as stored (always well formed), parsed once: answers format many amounts."""
    return Asset.parse(asset)


class Replayed(dict[str, Any]):
    """An answer given again from what the command's first run recorded: a retry with the
    same id and body, which wrote nothing. The HTTP API says so (``Idempotent-Replayed``)."""


def opened_result(account: Account, position: Position | int) -> dict[str, Any]:
    """The answer to an open, then and on every retry: the account as it was opened."""
    asset, overdraft_limit, metadata = account.opened_with
    return account_view(account.account_id, asset, OPEN, overdraft_limit, metadata, position)


def account_result(account: Account, position: Position | int) -> dict[str, Any]:
    return account_view(
        account.account_id,
        account.asset,
        account.status,
        account.overdraft_limit,
        account.metadata,
        position,
        (account.daily_limit, account.monthly_limit),
    )


def monitor_result(
    account: Account, monitor: Monitor, position: Position | int, *, removed: bool = False
) -> dict[str, Any]:
    state = "removed" if removed else "triggered" if monitor.id in account.triggered_monitors else "clear"
    return {
        "id": monitor.id,
        "account": account.account_id,
        "asset": account.asset,
        "balance": monitor.balance,
        "when": monitor.when,
        "amount": _unit(account.asset).format(monitor.amount),
        "state": state,
        "position": position,
    }


def account_view(
    account_id: str,
    asset: str,
    status: str,
    overdraft_limit: int,
    metadata: dict[str, Any],
    position: Position | int,
    limits: tuple[int | None, int | None] = (None, None),
) -> dict[str, Any]:
    unit = _unit(asset)
    return {
        "id": account_id,
        "asset": asset,
        "status": status,
        "overdraft_limit": unit.format(overdraft_limit),
        "daily_limit": None if limits[0] is None else unit.format(limits[0]),
        "monthly_limit": None if limits[1] is None else unit.format(limits[1]),
        "metadata": metadata,
        "position": position,
    }


def balances_view(balances: Mapping[str, Balance], asset: str) -> dict[str, dict[str, str]]:
    """Each client account's totals after the command, and what is available, by account id."""
    fmt = _unit(asset).format
    view = {}
    for account_id, balance in sorted(balances.items()):
        debits, credits, pending = balance["posted_debits"], balance["posted_credits"], balance["pending_debits"]
        view[account_id] = {
            "posted_debits": fmt(debits),
            "posted_credits": fmt(credits),
            "pending_debits": fmt(pending),
            "pending_credits": fmt(balance["pending_credits"]),
            "available": fmt(credits - debits - pending),
        }
    return view


def transfer_result(
    transfer: Transfer, position: Position | int, balances: Mapping[str, Balance] | None = None
) -> dict[str, Any]:
    """``balances``: the moved client accounts' balances after the command (none for the
    legs of a transaction, whose answer gives them once for all legs)."""
    asset = _unit(transfer.asset)
    result: dict[str, Any] = {
        "id": transfer.transfer_id,
        "status": transfer.status,
        "debit_account": transfer.debit_account,
        "credit_account": transfer.credit_account,
        "amount": asset.format(transfer.requested_amount),
        "asset": transfer.asset,
        "metadata": transfer.metadata,
    }
    if transfer.reverses:
        result["reverses"] = transfer.reverses
    if transfer.reversed_amount:
        result["reversed_amount"] = asset.format(transfer.reversed_amount)
    if transfer.fee:
        result["fee"] = {
            "transfer_id": fee_transfer_id(transfer.transfer_id),
            "amount": asset.format(transfer.fee),
            "payer": transfer.fee_payer,
        }
    if transfer.fee_for:
        result["fee_for"] = transfer.fee_for
    if transfer.pending_amount:  # a pending transfer
        result["posted_amount"] = asset.format(transfer.amount)
        result["expires_at"] = transfer.expires_at.isoformat() if transfer.expires_at else None
    if balances:
        result["balances"] = balances_view(balances, transfer.asset)
    result["position"] = position
    return result


def transaction_result(
    transaction_id: str, transfers: list[Transfer], position: Position | int, balances: Mapping[str, Balance]
) -> dict[str, Any]:
    """A transaction's legs share its position and its balances; they do not repeat them."""
    result: dict[str, Any] = {
        "id": transaction_id,
        "transfers": [{k: v for k, v in transfer_result(t, position).items() if k != "position"} for t in transfers],
    }
    if balances and transfers:
        result["balances"] = balances_view(balances, transfers[0].asset)
    result["position"] = position
    return result


def deposit_result(
    transfer: Transfer, position: Position | int, balances: Mapping[str, Balance] | None = None
) -> dict[str, Any]:
    asset = _unit(transfer.asset)
    result: dict[str, Any] = {
        "id": transfer.transfer_id,
        "status": transfer.status,
        "account": transfer.credit_account,
        "amount": asset.format(transfer.amount),
        "asset": transfer.asset,
    }
    if balances:
        result["balances"] = balances_view(balances, transfer.asset)
    result["position"] = position
    return result


def fee_rule_result(rule: FeeRule, position: Position | int) -> dict[str, Any]:
    asset = _unit(rule.asset)
    terms = rule.terms
    return {
        "asset": rule.asset,
        "operation": rule.operation,
        "basis_points": terms.basis_points,
        "fixed": asset.format(terms.fixed),
        "min": asset.format(terms.minimum),
        "max": None if terms.maximum is None else asset.format(terms.maximum),
        "payer": terms.payer,
        "active": terms.active,
        "fee_account": fee_account_id(rule.asset),
        "position": position,
    }


def payout_result(
    payout: Payout, position: Position | int, balances: Mapping[str, Balance] | None = None, *, fee: int
) -> dict[str, Any]:
    asset = _unit(payout.asset)
    result: dict[str, Any] = {
        "id": payout.payout_id,
        "state": payout.state,
        "account": payout.account,
        "amount": asset.format(payout.amount),
        "fee": asset.format(fee),
        "asset": payout.asset,
        "destination": payout.destination,
        "memo": payout.memo,
        "hold_id": payout.hold_id,
        "attempts": payout.attempts,
        "tx_hash": payout.tx_hash,
        "ledger": payout.ledger,
        "reason": payout.reason,
        "stuck": payout.stuck,
        "cancel_requested": payout.cancel_requested,
    }
    if balances:
        result["balances"] = balances_view(balances, payout.asset)
    result["position"] = position
    return result
