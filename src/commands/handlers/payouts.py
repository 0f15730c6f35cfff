"""Money leaving the ledger for a Stellar account: a payout request holds the amount on
the account (a pending transfer to the asset's clearing account); the chain worker then
reports attempts and the outcome, which settles the hold (``ledger.payouts.settle_hold``).

What the chain worker reports is idempotent, and a payout ends one way only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commands.answers import Replayed, payout_result
from commands.handlers.context import Sides, Writer, saveable
from commands.messages import RequestPayout
from ledger.errors import AmountExceedsChainLimit, AssetNotOnChain, IdConflict, PayoutNotFound
from ledger.ids import clearing_account_id, payout_hold_id
from ledger.money import Asset
from ledger.payouts import MAX_CHAIN_AMOUNT, Payout, settle_hold


def request_payout(w: Writer, cmd: RequestPayout) -> dict[str, Any]:
    account = w.account(cmd.account)
    amount = Asset.parse(account.asset).parse_amount(cmd.amount)
    existing = w.payout(cmd.id)
    if existing is not None:
        if not existing.same_request(cmd.account, amount, cmd.destination, cmd.memo):
            raise IdConflict(f"payout id {cmd.id!r} was already used with a different body")
        first, position = w.as_created(existing), w.position_of(existing.id)
        moved = w.recorded_balances(position, [first.hold_id], [first.account])
        return Replayed(payout_result(first, position, moved))
    if account.asset not in w.payout_assets:
        raise AssetNotOnChain(f"{account.asset} is not mapped to a Stellar asset (LEDGER_STELLAR_ASSETS)")
    if amount > MAX_CHAIN_AMOUNT:  # refused here: the worker could never pay it, nor let the hold go
        unit = Asset.parse(account.asset)
        raise AmountExceedsChainLimit(
            f"{unit.format(amount)} is more than one Stellar payment carries ({unit.format(MAX_CHAIN_AMOUNT)})"
        )
    account.require_open()
    sides: Sides = {cmd.account: account}
    hold = w.move(
        sides,
        payout_hold_id(cmd.id),
        "payout",
        cmd.account,
        clearing_account_id(account.asset),
        amount,
        pending=True,
        metadata={"payout": cmd.id, "destination": cmd.destination},
    )
    # The clearing account is opened before the asset's first payout, in a save of its
    # own: its movements are appended at the stream's end, which must exist by then.
    opened = w.missing_system_accounts(account.asset, clearing_account_id(account.asset))
    if opened:
        w.save(*opened)
    payout = Payout(
        payout_id=cmd.id,
        account=cmd.account,
        asset=account.asset,
        amount=amount,
        destination=cmd.destination,
        memo=cmd.memo,
        hold_id=hold.transfer_id,
    )
    return payout_result(payout, w.save(*saveable(*sides.values()), hold, payout), w.balances(sides))


def resolve_payout(
    w: Writer, payout_id: str, *, confirmed: tuple[str, int] | None = None, failure: str | None = None
) -> dict[str, Any]:
    """Record the outcome on chain (``confirmed`` with its transaction hash and ledger, or
    a ``failure``) and settle the hold the same way, in one save."""
    payout = _payout(w, payout_id)
    changed = payout.confirm(*confirmed) if confirmed else payout.fail(failure or "failed")
    if not changed:
        return payout_result(payout, w.position_of(payout.id, payout.version))
    hold = w.transfer(payout.hold_id)
    assert hold is not None
    sides: Sides = {}
    debit, credit = w.side(hold.debit_account, sides), w.side(hold.credit_account, sides)
    settle_hold(payout, hold, debit, credit, w.clock())
    return payout_result(payout, w.save(*saveable(*sides.values()), hold, payout))


def note_payout(w: Writer, payout_id: str, note: Callable[[Payout], bool]) -> dict[str, Any]:
    """Record what the chain worker noticed (an attempt, a payout stuck); a repeat saves nothing."""
    payout = _payout(w, payout_id)
    if not note(payout):
        return payout_result(payout, w.position_of(payout.id, payout.version))
    return payout_result(payout, w.save(payout))


def _payout(w: Writer, payout_id: str) -> Payout:
    payout = w.payout(payout_id)
    if payout is None:
        raise PayoutNotFound(f"payout {payout_id!r} does not exist")
    return payout
