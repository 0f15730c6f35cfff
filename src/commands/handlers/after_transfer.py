"""What happens to a transfer after it is made: a pending transfer posted, voided or
expired, a posted transfer reversed.

A pending transfer resolves at most once: posting, voiding and expiring all append to
the transfer's own stream, and the event store's version check lets only one of them
win. A retry of a post or a void is answered as the first one was.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.answers import Replayed, transfer_result
from commands.handlers.context import Sides, Writer, saveable
from commands.messages import PostTransfer, ReverseTransfer, VoidTransfer
from ledger.errors import IdConflict, PayoutHold, TransferNotFound, TransferNotPending
from ledger.ids import fee_transfer_id, transfer_uuid
from ledger.money import Asset
from ledger.transfers import POSTED, VOIDED, Transfer


def pending_hints(transfer_id: str) -> tuple[UUID, ...]:
    """What posting, voiding or expiring a pending transfer reads first: the transfer and its fee leg."""
    return transfer_uuid(transfer_id), transfer_uuid(fee_transfer_id(transfer_id))


def post_transfer(w: Writer, cmd: PostTransfer) -> dict[str, Any]:
    """Post a pending transfer for all of it or less; its fee leg is posted for the fee on what is posted."""
    transfer = _pending_transfer(w, cmd.id)
    fee_leg = w.transfer(fee_transfer_id(cmd.id)) if transfer.fee else None
    asset = Asset.parse(transfer.asset)
    gross = None if cmd.amount is None else asset.parse_amount(cmd.amount)
    if transfer.status == POSTED and transfer.pending_amount:
        posted = transfer.posted_gross(fee_leg)
        if gross not in (None, posted):
            raise TransferNotPending(f"transfer {cmd.id!r} was already posted for {asset.format(posted)}")
        return _resolution_replayed(w, transfer)
    now = w.clock()
    transfer.check_postable(now)
    net, fee = transfer.posting(gross)
    # The transfers' own rules first (how much may be posted), then the accounts'.
    legs = [(transfer, transfer.post(net, now))]
    if fee_leg is not None:
        legs.insert(0, (fee_leg, fee_leg.post(fee, now)))
    sides: Sides = {}
    for leg, posted_amount in legs:
        w.side(leg.debit_account, sides).post_pending_debit(leg.transfer_id, leg.pending_amount, posted_amount)
        w.side(leg.credit_account, sides).post_pending_credit(leg.transfer_id, leg.pending_amount, posted_amount)
    position = w.save(*saveable(*sides.values()), *(leg for leg, _ in legs), timeouts_cleared=[cmd.id])
    return transfer_result(transfer, position, w.balances(sides))


def void_transfer(w: Writer, cmd: VoidTransfer) -> dict[str, Any]:
    transfer = _pending_transfer(w, cmd.id)
    if transfer.status == VOIDED:
        return _resolution_replayed(w, transfer)
    transfer.void(w.clock())
    return _release(w, transfer, VOIDED)


def expire_transfer(w: Writer, transfer_id: str) -> bool:
    """Void a pending transfer whose timeout has passed; False if there was nothing to do."""
    transfer = w.transfer(transfer_id)
    if transfer is None or not transfer.is_expired(w.clock()):
        return False
    transfer.expire(w.clock())
    _release(w, transfer, transfer.status)
    return True


def reverse_transfer(w: Writer, cmd: ReverseTransfer) -> dict[str, Any]:
    """A compensating transfer for all that is left of a posted one, or part of it."""
    original = w.transfer(cmd.transfer)
    if original is None:
        raise TransferNotFound(f"transfer {cmd.transfer!r} does not exist")
    if original.kind == "payout":
        raise PayoutHold(f"transfer {cmd.transfer!r} paid out on chain; it cannot be reversed in the ledger")
    asset = Asset.parse(original.asset)
    amount = None if cmd.amount is None else asset.parse_amount(cmd.amount)
    existing = w.transfer(cmd.id)
    if existing is not None:
        if existing.reverses != cmd.transfer or (amount is not None and amount != existing.amount):
            raise IdConflict(f"transfer id {cmd.id!r} was already used with a different body")
        position = w.position_of(existing.id)
        moved = w.recorded_balances(position, [cmd.id], [existing.debit_account, existing.credit_account])
        return Replayed(transfer_result(w.as_created(existing), position, moved))
    reversal = original.reversed_by(cmd.id, amount)
    debit, credit = w.side(reversal.debit_account), w.side(reversal.credit_account)
    debit.require_open()
    credit.require_open()
    debit.debit(cmd.id, reversal.amount)
    credit.credit(cmd.id, reversal.amount)
    position = w.save(*saveable(debit, credit), original, reversal)
    return transfer_result(
        reversal, position, w.balances({reversal.debit_account: debit, reversal.credit_account: credit})
    )


def _release(w: Writer, transfer: Transfer, reason: str) -> dict[str, Any]:
    """Void both sides of a pending transfer (and of its fee), in the same save as the transfer's event."""
    legs = [transfer]
    if transfer.fee:
        fee_leg = w.transfer(fee_transfer_id(transfer.transfer_id))
        if fee_leg is None:
            raise RuntimeError(f"transfer {transfer.transfer_id!r} has a fee and no fee leg")
        if reason == VOIDED:
            fee_leg.void(w.clock())
        else:
            fee_leg.expire(w.clock())
        legs.insert(0, fee_leg)
    sides: Sides = {}
    for leg in legs:
        w.side(leg.debit_account, sides).void_pending_debit(leg.transfer_id, leg.pending_amount, reason)
        w.side(leg.credit_account, sides).void_pending_credit(leg.transfer_id, leg.pending_amount, reason)
    position = w.save(*saveable(*sides.values()), *legs, timeouts_cleared=[transfer.transfer_id])
    return transfer_result(transfer, position, w.balances(sides))


def _resolution_replayed(w: Writer, transfer: Transfer) -> dict[str, Any]:
    """The answer to a post or a void sent again: the transfer and balances as the first left them."""
    position = w.position_of(transfer.id, 2)
    ids = [transfer.transfer_id, fee_transfer_id(transfer.transfer_id)]
    moved = w.recorded_balances(position, ids, [transfer.debit_account, transfer.credit_account])
    return Replayed(transfer_result(w.work.get_version(transfer.id, 2), position, moved))


def _pending_transfer(w: Writer, transfer_id: str) -> Transfer:
    """A pending transfer the client may post or void (a payout's is the chain's to resolve)."""
    transfer = w.transfer(transfer_id)
    if transfer is None:
        raise TransferNotFound(f"transfer {transfer_id!r} does not exist")
    if transfer.kind == "payout":
        raise PayoutHold(f"transfer {transfer_id!r} holds a payout; only its outcome on chain resolves it")
    if not transfer.pending_amount:
        raise TransferNotPending(f"transfer {transfer_id!r} was posted at once; it was never pending")
    return transfer
