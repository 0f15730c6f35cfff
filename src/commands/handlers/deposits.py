"""Money entering the ledger: a deposit (from the asset's issuance account) and a payment
received on chain (from the asset's clearing account, which mirrors what the chain
holds for the ledger).

Both are idempotent on their id: a deposit retried with the same body, or a chain
payment reported again, is answered as the first time.
"""

from __future__ import annotations

from typing import Any

from commands.answers import Replayed, deposit_result
from commands.handlers.context import Sides, Writer, saveable
from commands.messages import Deposit
from ledger.accounts import OPEN, Account
from ledger.errors import AccountNotFound, IdConflict, InvalidRequest
from ledger.ids import CLIENT_ID, chain_deposit_id, clearing_account_id, issuance_account_id, suspense_account_id
from ledger.money import Asset
from ledger.transfers import Transfer


def deposit(w: Writer, cmd: Deposit) -> dict[str, Any]:
    account = w.account(cmd.account)
    if account.system:
        raise InvalidRequest(f"account {cmd.account!r} is a system account")
    asset = Asset.parse(account.asset)
    amount = asset.parse_amount(cmd.amount)
    issuance_id = issuance_account_id(account.asset)
    existing = w.transfer(cmd.id)
    if existing is not None:
        if not existing.same_request("deposit", issuance_id, account.account_id, amount, {}):
            raise IdConflict(f"deposit id {cmd.id!r} was already used with a different body")
        position = w.position_of(existing.id)
        moved = w.recorded_balances(position, [cmd.id], [account.account_id])
        return Replayed(deposit_result(w.as_created(existing), position, moved))
    made = Transfer(
        transfer_id=cmd.id,
        kind="deposit",
        debit_account=issuance_id,
        credit_account=account.account_id,
        asset=str(asset),
        amount=amount,
        metadata={},
    )
    account.credit(cmd.id, amount)
    issuance = Account.system_event(issuance_id, Account.Debited, transfer_id=cmd.id, amount=amount)
    position = w.save(issuance, account, made)
    return deposit_result(made, position, w.balances({account.account_id: account}))


def credit_from_chain(w: Writer, payment_id: str, asset: str, amount: int, memo: str | None) -> dict[str, Any]:
    """Credit a payment into the distribution account once, to the account its memo names
    (or to the asset's suspense account when no open account of that asset has that id)."""
    transfer_id = chain_deposit_id(payment_id)
    existing = w.transfer(transfer_id)
    if existing is not None:
        return deposit_result(w.as_created(existing), w.position_of(existing.id))
    target: Account | None = None
    if memo and CLIENT_ID.fullmatch(memo):
        try:
            target = w.account(memo)
        except AccountNotFound:
            pass
    if target is not None and (target.asset != asset or target.status != OPEN):
        target = None
    opened = w.missing_system_accounts(asset, clearing_account_id(asset), suspense_account_id(asset))
    if opened:
        w.save(*opened)
    credit_id = target.account_id if target else suspense_account_id(asset)
    sides: Sides = {credit_id: target} if target else {}
    made = w.move(
        sides,
        transfer_id,
        "chain_deposit",
        clearing_account_id(asset),
        credit_id,
        amount,
        metadata={"stellar_payment": payment_id, "memo": memo},
        asset=asset,
    )
    return deposit_result(made, w.save(*saveable(*sides.values()), made))
