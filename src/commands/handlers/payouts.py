"""Money leaving the ledger for a Stellar account: a payout request holds the amount on
the account (a pending transfer to the asset's clearing account); the chain worker then
reports attempts and the outcome, which posts or voids that pending transfer
(``ledger.payouts.post_or_void``).

What the chain worker reports is idempotent, and a payout ends one way only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commands.answers import Replayed, payout_result
from commands.handlers.context import Sides, Writer, saveable
from commands.messages import RequestPayout
from ledger.distribution import DistributionBalance, is_low
from ledger.errors import AmountExceedsChainLimit, AssetNotOnChain, IdConflict, PayoutNotFound
from ledger.fees import charge
from ledger.ids import clearing_account_id, fee_account_id, fee_transfer_id, payout_transfer_id
from ledger.money import Asset
from ledger.payouts import MAX_CHAIN_AMOUNT, Payout, post_or_void


def request_payout(w: Writer, cmd: RequestPayout) -> dict[str, Any]:
    """Hold what the chain will pay as a pending transfer and, if the asset has a payout
    fee rule, the fee as a pending leg to the fee account: both post when the chain
    confirms, both are voided when it fails. A fee the recipient pays comes out of what
    is paid on chain."""
    account = w.account(cmd.account)
    unit = Asset.parse(account.asset)
    amount = unit.parse_amount(cmd.amount)
    existing = w.payout(cmd.id)
    if existing is not None:
        return _payout_retried(w, cmd, existing, amount)
    if account.asset not in w.payout_assets:
        raise AssetNotOnChain(f"{account.asset} is not mapped to a Stellar asset (LEDGER_STELLAR_ASSETS)")
    rules: dict[str, int] = {}
    terms = w.fee_terms(account.asset, "payout", rules)
    paid, fee = charge(amount, terms, account.asset)
    if paid > MAX_CHAIN_AMOUNT:  # refused here: the worker could never pay it, nor void the transfer
        raise AmountExceedsChainLimit(
            f"{unit.format(paid)} is more than one Stellar payment carries ({unit.format(MAX_CHAIN_AMOUNT)})"
        )
    account.require_open()
    sides: Sides = {cmd.account: account}
    transfer_id = payout_transfer_id(cmd.id)
    transfer = w.move(
        sides,
        transfer_id,
        "payout",
        cmd.account,
        clearing_account_id(account.asset),
        paid,
        pending=True,
        metadata={"payout": cmd.id, "destination": cmd.destination},
        fee=fee,
        fee_payer=terms.payer if fee and terms else None,
        fee_terms=terms.as_dict() if fee and terms else None,
    )
    fee_legs = []
    if fee:
        fee_id = fee_transfer_id(transfer_id)
        fee_legs.append(
            w.move(
                sides, fee_id, "fee", cmd.account, fee_account_id(account.asset), fee, pending=True, fee_for=transfer_id
            )
        )
    # The clearing and fee accounts are opened before the asset's first payout, in a save
    # of their own: their movements are appended at the streams' end, which must exist by then.
    opened = w.missing_system_accounts(account.asset, clearing_account_id(account.asset), fee_account_id(account.asset))
    if opened:
        w.save(*opened)
    payout = Payout(
        payout_id=cmd.id,
        account=cmd.account,
        asset=account.asset,
        amount=paid,
        destination=cmd.destination,
        memo=cmd.memo,
        hold_id=transfer.transfer_id,
    )
    position = w.save(*saveable(*sides.values()), *fee_legs, transfer, payout, expected_versions=rules)
    return payout_result(payout, position, w.balances(sides), fee=fee)


def _payout_retried(w: Writer, cmd: RequestPayout, existing: Payout, amount: int) -> dict[str, Any]:
    """The first answer to a payout sent again with the same body (the amount asked for
    includes a fee the recipient pays)."""
    first = w.as_created(existing)
    transfer = w.transfer(first.hold_id)
    fee = transfer.fee if transfer else 0
    asked = first.amount + fee if transfer and transfer.fee_payer == "recipient" else first.amount
    if not existing.same_request(cmd.account, amount, cmd.destination, cmd.memo, asked=asked):
        raise IdConflict(f"payout id {cmd.id!r} was already used with a different body")
    position = w.position_of(existing.id)
    ids = [first.hold_id, fee_transfer_id(first.hold_id)]
    moved = w.recorded_balances(position, ids, [first.account])
    return Replayed(payout_result(first, position, moved, fee=fee))


def resolve_payout(
    w: Writer, payout_id: str, *, confirmed: tuple[str, int] | None = None, failure: str | None = None
) -> dict[str, Any]:
    """Record the outcome on chain (``confirmed`` with its transaction hash and ledger, or
    a ``failure``) and post or void its pending transfer the same way, in one save."""
    payout = _payout(w, payout_id)
    changed = payout.confirm(*confirmed) if confirmed else payout.fail(failure or "failed")
    transfer = w.transfer(payout.hold_id)
    if transfer is None:
        raise RuntimeError(f"payout {payout_id!r} has no transfer {payout.hold_id!r}")
    if not changed:
        return payout_result(payout, w.position_of(payout.id, payout.version), fee=transfer.fee)
    fee_leg = w.transfer(fee_transfer_id(transfer.transfer_id)) if transfer.fee else None
    legs = [leg for leg in (fee_leg, transfer) if leg is not None]
    sides: Sides = {}
    post_or_void(payout, legs, lambda account_id: w.side(account_id, sides), w.clock())
    return payout_result(payout, w.save(*saveable(*sides.values()), *legs, payout), fee=transfer.fee)


def note_payout(w: Writer, payout_id: str, note: Callable[[Payout], bool]) -> dict[str, Any]:
    """Record what the chain worker noticed (an attempt, a payout stuck); a repeat saves nothing."""
    payout = _payout(w, payout_id)
    transfer = w.transfer(payout.hold_id)
    fee = transfer.fee if transfer else 0
    if not note(payout):
        return payout_result(payout, w.position_of(payout.id, payout.version), fee=fee)
    return payout_result(payout, w.save(payout), fee=fee)


def _payout(w: Writer, payout_id: str) -> Payout:
    payout = w.payout(payout_id)
    if payout is None:
        raise PayoutNotFound(f"payout {payout_id!r} does not exist")
    return payout


def judge_distribution_balance(w: Writer, asset: str, distribution: str, balance: int, needed: int, floor: int) -> bool:
    """Record the distribution account's balance crossing into low or back
    (``ledger.distribution``); True when this judgment was such a crossing."""
    watched: DistributionBalance | None = w.work.get(DistributionBalance.create_id(distribution, asset))  # type: ignore[assignment]
    if watched is None:
        if not is_low(balance, needed, floor):
            return False  # never low yet: nothing to record
        watched = DistributionBalance(
            asset=asset, distribution=distribution, balance=balance, needed=needed, floor=floor
        )
    elif not watched.judge(balance, needed, floor):
        return False
    w.save(watched)
    return True
