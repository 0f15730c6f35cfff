"""An operator's corrections to money the ledger holds in its own accounts: a chain
deposit that landed in suspense credited to the account it was meant for, and what a
fee account collected swept to a named account. (Cancelling a stuck payout is in
``handlers.payouts``: only the chain worker can end a payout.)

Each is a transfer out of a system account, which is read in full here (most movements
append to system accounts without reading them), so that it cannot take out more than
the account holds; its save checks the account's version, so a concurrent movement
makes the command run again. The acting key is on every event, as on all commands.
"""

from __future__ import annotations

from typing import Any

from commands.answers import Replayed, transfer_result
from commands.handlers.context import Sides, Writer, saveable
from commands.messages import ReassignSuspense, SweepFees
from ledger.accounts import Account
from ledger.errors import AssetMismatch, IdConflict, InsufficientFunds, NotInSuspense, TransferNotFound
from ledger.ids import account_uuid, fee_account_id, reassignment_id, suspense_account_id
from ledger.money import Asset
from ledger.transfers import Transfer


def reassign_suspense(w: Writer, cmd: ReassignSuspense) -> dict[str, Any]:
    """Once per deposit: sent again for the same account it is answered as the first
    time; for another account it is an ``IdConflict``."""
    deposit = w.transfer(cmd.deposit)
    if deposit is None or deposit.kind != "chain_deposit":
        raise TransferNotFound(f"no chain deposit {cmd.deposit!r}")
    suspense_id = suspense_account_id(deposit.asset)
    made_id = reassignment_id(deposit.transfer_id)
    existing = w.transfer(made_id)
    if existing is not None:
        if existing.credit_account != cmd.account:
            raise IdConflict(f"deposit {cmd.deposit!r} was already reassigned to account {existing.credit_account!r}")
        return _replayed(w, existing)
    if deposit.credit_account != suspense_id:
        raise NotInSuspense(f"deposit {cmd.deposit!r} was credited to account {deposit.credit_account!r}")
    suspense, sides = _sides(w, suspense_id, cmd.account, deposit.asset)
    _require_available(suspense, deposit.amount)
    made = w.move(
        sides,
        made_id,
        "reassignment",
        suspense_id,
        cmd.account,
        deposit.amount,
        metadata={"deposit": deposit.transfer_id},
    )
    return transfer_result(made, w.save(*saveable(*sides.values()), made), w.balances(sides))


def sweep_fees(w: Writer, cmd: SweepFees) -> dict[str, Any]:
    """The amount asked, or all the fee account has available when none is."""
    asset = Asset.parse(cmd.asset)
    amount = None if cmd.amount is None else asset.parse_amount(cmd.amount)
    fees_id = fee_account_id(str(asset))
    existing = w.transfer(cmd.id)
    if existing is not None:
        asked = existing.amount if amount is None else amount
        if not existing.same_request("sweep", fees_id, cmd.account, asked, {}):
            raise IdConflict(f"transfer id {cmd.id!r} was already used with a different body")
        return _replayed(w, existing)
    collected, sides = _sides(w, fees_id, cmd.account, str(asset))
    amount = _require_available(collected, amount)
    made = w.move(sides, cmd.id, "sweep", fees_id, cmd.account, amount)
    return transfer_result(made, w.save(*saveable(*sides.values()), made), w.balances(sides))


def _sides(w: Writer, system_id: str, account_id: str, asset: str) -> tuple[Account, Sides]:
    """The system account read in full (its funds are checked like a client's) and the
    open client account of the same asset that receives the money."""
    target = w.account(account_id)  # a client's id: never a system account ($...)
    if target.asset != asset:
        raise AssetMismatch(f"account {account_id!r} holds {target.asset}, not {asset}")
    target.require_open()
    source = w.work.get(account_uuid(system_id))
    if not isinstance(source, Account):
        raise InsufficientFunds(f"account {system_id!r} has never held any money")
    return source, {system_id: source, account_id: target}


def _require_available(source: Account, amount: int | None) -> int:
    """``amount`` (None: all available), if the system account has it: nothing checks
    system accounts' funds on their own (an issuance account's balance is negative)."""
    wanted = source.available if amount is None else amount
    if wanted <= 0 or wanted > source.available:
        unit = Asset.parse(source.asset)
        raise InsufficientFunds(
            f"account {source.account_id!r} has {unit.format(source.available)} available; "
            f"cannot move {unit.format(wanted)}"
        )
    return wanted


def _replayed(w: Writer, existing: Transfer) -> dict[str, Any]:
    position = w.position_of(existing.id)
    moved = w.recorded_balances(position, [existing.transfer_id], [existing.credit_account])
    return Replayed(transfer_result(w.as_created(existing), position, moved))
