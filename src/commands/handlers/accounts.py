"""Accounts and fee rules: open, change policy, freeze, unfreeze, close, watch a balance,
set a fee rule.

Opening is idempotent on the account's id: a retry with the same body is answered as the
first run was, a different body is an ``IdConflict``. A change that changes nothing (a
retry, a freeze of a frozen account, a fee rule set to its own terms) saves nothing and is
answered with the position of the state it already has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commands.answers import Replayed, account_result, fee_rule_result, monitor_result, opened_result
from commands.handlers.context import Writer
from commands.messages import AccountAction, ChangePolicy, OpenAccount, RemoveMonitor, SetFeeRule, SetMonitor
from commands.unit_of_work import Position
from ledger.accounts import Account
from ledger.errors import AccountNotFound, IdConflict, InvalidRequest
from ledger.fees import FeeRule
from ledger.ids import fee_rule_uuid
from ledger.money import Asset
from ledger.monitors import Monitor

ACTIONS: dict[str, Callable[[Account], bool]] = {
    "freeze": Account.freeze,
    "unfreeze": Account.unfreeze,
    "close": Account.close,
}


def open_account(w: Writer, cmd: OpenAccount) -> dict[str, Any]:
    """Open a client account, and its asset's issuance and fee accounts in the same save
    if this is the asset's first account."""
    asset = Asset.parse(cmd.asset)
    try:
        existing = w.account(cmd.id)
    except AccountNotFound:
        existing = None
    if existing is not None:
        if existing.opened_with != (str(asset), cmd.overdraft_limit, cmd.metadata):
            raise IdConflict(f"account {cmd.id!r} already exists with a different body")
        return Replayed(opened_result(existing, w.position_of(existing.id)))

    account = Account(
        account_id=cmd.id,
        asset=str(asset),
        overdraft_limit=cmd.overdraft_limit,
        system=False,
        metadata=cmd.metadata,
    )
    position = w.save(*w.missing_system_accounts(str(asset)), account)
    return opened_result(account, position)


def set_fee_rule(w: Writer, cmd: SetFeeRule) -> dict[str, Any]:
    asset = str(Asset.parse(cmd.asset))
    rule: FeeRule | None = w.work.get(fee_rule_uuid(asset, cmd.operation))  # type: ignore[assignment]
    if rule is None:
        rule = FeeRule(asset=asset, operation=cmd.operation, terms=cmd.terms.as_dict())
    elif not rule.change(cmd.terms):
        return fee_rule_result(rule, w.position_of(rule.id, rule.version))
    position = w.save(*w.missing_system_accounts(asset), rule)
    w.forget_fee_rule(rule.id)
    return fee_rule_result(rule, position)


def change_policy(w: Writer, cmd: ChangePolicy) -> dict[str, Any]:
    """Change an account's overdraft limit and outgoing limits; a limit not named stays."""

    def change(account: Account) -> bool:
        asset = Asset.parse(account.asset)
        values = {
            name: None if text is None else asset.parse_amount(text, allow_zero=True)
            for name, text in cmd.changes.items()
        }
        changed = False
        if "overdraft_limit" in values:
            changed |= account.change_overdraft_limit(values["overdraft_limit"] or 0)
        if "daily_limit" in values or "monthly_limit" in values:
            changed |= account.change_limits(
                values.get("daily_limit", account.daily_limit), values.get("monthly_limit", account.monthly_limit)
            )
        return changed

    return account_result(*change_account(w, cmd.account, change))


def account_action(w: Writer, cmd: AccountAction) -> dict[str, Any]:
    """Freeze, unfreeze or close an account."""
    return account_result(*change_account(w, cmd.account, ACTIONS[cmd.action]))


def set_monitor(w: Writer, cmd: SetMonitor) -> dict[str, Any]:
    """Set (or change) a monitor; a crossing it already stands past is recorded with it."""

    def change(account: Account) -> bool:
        amount = Asset.parse(account.asset).parse_amount(cmd.amount, allow_zero=True)
        return account.set_monitor(Monitor(cmd.id, cmd.balance, cmd.when, amount))

    account, position = change_account(w, cmd.account, change)
    return monitor_result(account, account.monitors[cmd.id], position)


def remove_monitor(w: Writer, cmd: RemoveMonitor) -> dict[str, Any]:
    removed: list[Monitor] = []

    def change(account: Account) -> bool:
        removed.append(account.remove_monitor(cmd.id))
        return True

    account, position = change_account(w, cmd.account, change)
    return monitor_result(account, removed[0], position, removed=True)


def change_account(w: Writer, account_id: str, change: Callable[[Account], bool]) -> tuple[Account, Position | int]:
    """Apply ``change`` to a client account (system accounts are the ledger's own); the
    account, and the position of the state it is in."""
    account = w.account(account_id)
    if account.system:
        raise InvalidRequest(f"account {account_id!r} is a system account")
    if change(account):
        return account, w.save(account)
    return account, w.position_of(account.id, account.version)
