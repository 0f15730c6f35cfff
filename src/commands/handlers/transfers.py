"""Transfers between client accounts: one, a batch of independent ones, or a transaction
whose legs apply together; each leg charged the asset's fee, if it has a rule.

Every transfer is idempotent on its id: a retry with the same body is answered as the
first run was, a different body is an ``IdConflict``. Pending transfers are
posted, voided or expired in ``handlers.after_transfer``; reversals are there too.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from commands.answers import Replayed, transaction_result, transfer_result
from commands.handlers.context import Sides, Writer, saveable
from commands.messages import ExecuteTransaction, TransferBatch, TransferFunds
from ledger.accounts import Account
from ledger.errors import AssetMismatch, IdConflict, InvalidRequest, LedgerError, SameAccount
from ledger.fees import FeeTerms, charge
from ledger.ids import account_uuid, fee_account_id, fee_transfer_id, transfer_uuid
from ledger.money import Asset
from ledger.transactions import Transaction
from ledger.transfers import Transfer


def leg_hints(leg: TransferFunds) -> tuple[UUID, ...]:
    """What a transfer reads: its two accounts, and its id (a retry finds its first answer)."""
    return account_uuid(leg.debit_account), account_uuid(leg.credit_account), transfer_uuid(leg.id)


def transfer(w: Writer, cmd: TransferFunds) -> dict[str, Any]:
    existing = w.transfer(cmd.id)
    if existing is not None:
        return _transfer_retried(w, cmd, existing)
    sides: Sides = {}
    rules: dict[str, int] = {}
    made, fee_legs, timeouts = _charged_leg(w, cmd, sides, None, rules)
    # The transfer is saved last, so its first event carries the command's position.
    position = w.save(*saveable(*sides.values()), *fee_legs, made, timeouts_set=timeouts, expected_versions=rules)
    return transfer_result(made, position, w.balances(sides))


def _transfer_retried(w: Writer, cmd: TransferFunds, existing: Transfer) -> dict[str, Any]:
    """The answer to a transfer whose id is already used: the first answer, if the
    body is the same."""
    debit, credit, amount = _leg_terms(w, cmd)
    if not existing.same_request(
        "transfer",
        debit.account_id,
        credit.account_id,
        amount,
        cmd.metadata,
        pending=cmd.pending,
        expires_in=cmd.timeout_seconds,
    ):
        raise IdConflict(f"transfer id {cmd.id!r} was already used with a different body")
    position = w.position_of(existing.id)
    moved = w.recorded_balances(position, _leg_ids(existing), [existing.debit_account, existing.credit_account])
    return Replayed(transfer_result(w.as_created(existing), position, moved))


def transfer_batch(w: Writer, cmd: TransferBatch) -> list[dict[str, Any] | LedgerError]:
    """Each transfer in a scope of its own: it stands or falls alone, as if sent alone."""
    if len({t.id for t in cmd.transfers}) != len(cmd.transfers):
        raise InvalidRequest("transfers must have distinct ids")
    answers: list[dict[str, Any] | LedgerError] = []
    for leg in cmd.transfers:
        try:
            with w.work.scope():
                answers.append(transfer(w, leg))
        except LedgerError as exc:
            answers.append(exc)
    return answers


def transaction(w: Writer, cmd: ExecuteTransaction) -> dict[str, Any]:
    """All legs or none: one refused leg refuses the transaction, naming the leg."""
    if len({leg.id for leg in cmd.transfers}) != len(cmd.transfers):
        raise InvalidRequest("transfers must have distinct ids")
    fingerprint = transaction_fingerprint(cmd)
    existing = w.transaction(cmd.id)
    if existing is not None:
        if existing.fingerprint != fingerprint:
            raise IdConflict(f"transaction id {cmd.id!r} was already used with a different body")
        recorded = [w.transfer(t) for t in existing.transfer_ids]
        originals = [w.as_created(t) for t in recorded if t]
        position = w.position_of(existing.id)
        ids = [i for t in originals for i in _leg_ids(t)]
        accounts = [a for t in originals for a in (t.debit_account, t.credit_account)]
        return Replayed(transaction_result(cmd.id, originals, position, w.recorded_balances(position, ids, accounts)))
    sides: Sides = {}
    rules: dict[str, int] = {}
    transfers: list[Transfer] = []
    to_save: list[Transfer] = []
    timeouts: list[tuple[str, datetime]] = []
    for index, leg in enumerate(cmd.transfers):
        try:
            if w.transfer(leg.id) is not None:
                raise IdConflict(f"transfer id {leg.id!r} is already used")
            made, fee_legs, timeout = _charged_leg(w, leg, sides, cmd.id, rules)
        except LedgerError as exc:
            raise type(exc)(f"transfers[{index}]: {exc.detail}") from None
        transfers.append(made)
        to_save.extend([*fee_legs, made])
        timeouts.extend(timeout)
    record = Transaction(
        transaction_id=cmd.id, transfer_ids=[t.transfer_id for t in transfers], fingerprint=fingerprint
    )
    position = w.save(*saveable(*sides.values()), *to_save, record, timeouts_set=timeouts, expected_versions=rules)
    return transaction_result(cmd.id, transfers, position, w.balances(sides))


def transaction_fingerprint(cmd: ExecuteTransaction) -> str:
    """What identifies a transaction's body: amounts compare by value ("1.0" is "1.00")."""
    legs = [
        [
            leg.id,
            leg.debit_account,
            leg.credit_account,
            str(Decimal(leg.amount).normalize()),
            leg.metadata,
            leg.pending,
            leg.timeout_seconds,
        ]
        for leg in cmd.transfers
    ]
    return hashlib.sha256(json.dumps(legs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _leg_ids(transfer: Transfer) -> list[str]:
    """The transfer ids a leg's movements carry: its own, and its fee leg's."""
    return [transfer.transfer_id, fee_transfer_id(transfer.transfer_id)]


def _charged_leg(
    w: Writer, leg: TransferFunds, sides: Sides, transaction_id: str | None, rules: dict[str, int]
) -> tuple[Transfer, list[Transfer], list[tuple[str, datetime]]]:
    """One transfer and, if the asset's fee rule charges it, its fee leg; nothing saved.

    The fee rule read is noted in ``rules`` (stream id to version), and the save
    checks it is still the latest, so a rule changed meanwhile makes the command run
    again with the new rule."""
    debit, _, amount = _leg_terms(w, leg, sides)
    terms = w.fee_terms(debit.asset, "transfer", rules)
    net, fee = charge(amount, terms, debit.asset)
    made, timeouts = _apply_leg(w, leg, sides, transaction_id, amount=net, fee=fee, terms=terms)
    if not fee:
        return made, [], timeouts
    fee_leg = w.move(
        sides,
        fee_transfer_id(leg.id),
        "fee",
        debit.account_id,
        fee_account_id(debit.asset),
        fee,
        pending=leg.pending,
        expires_at=made.expires_at,
        fee_for=leg.id,
        transaction_id=transaction_id,
    )
    return made, [fee_leg], timeouts


def _leg_terms(w: Writer, leg: TransferFunds, sides: Sides | None = None) -> tuple[Account, Account, int]:
    """The two accounts of a leg (shared through ``sides`` across legs) and its amount."""
    if leg.debit_account == leg.credit_account:
        raise SameAccount("debit_account and credit_account must differ")
    loaded = {} if sides is None else sides
    for account_id in (leg.debit_account, leg.credit_account):
        if account_id not in loaded:
            loaded[account_id] = w.account(account_id)
    debit, credit = loaded[leg.debit_account], loaded[leg.credit_account]
    if not (isinstance(debit, Account) and isinstance(credit, Account)):  # client ids never name system accounts
        raise TypeError("a transfer's sides must be read in full")
    if debit.asset != credit.asset:
        raise AssetMismatch(
            f"account {debit.account_id!r} holds {debit.asset} but account {credit.account_id!r} holds {credit.asset}"
        )
    return debit, credit, Asset.parse(debit.asset).parse_amount(leg.amount)


def _apply_leg(
    w: Writer,
    leg: TransferFunds,
    sides: Sides,
    transaction_id: str | None,
    *,
    amount: int | None = None,
    fee: int = 0,
    terms: FeeTerms | None = None,
) -> tuple[Transfer, list[tuple[str, datetime]]]:
    """Move (at once, or pending) one leg's money on the shared account objects; nothing is saved.

    ``amount`` overrides the leg's own when a fee is deducted from it."""
    debit, credit, leg_amount = _leg_terms(w, leg, sides)
    debit.require_open()  # a frozen or closed account is the reason, before its funds
    credit.require_open()
    expires_at = w.clock() + timedelta(seconds=leg.timeout_seconds) if leg.timeout_seconds else None
    made = w.move(
        sides,
        leg.id,
        "transfer",
        debit.account_id,
        credit.account_id,
        leg_amount if amount is None else amount,
        pending=leg.pending,
        expires_at=expires_at,
        metadata=leg.metadata,
        timeout_seconds=leg.timeout_seconds,
        transaction_id=transaction_id,
        fee=fee,
        fee_payer=terms.payer if fee and terms else None,
        fee_terms=terms.as_dict() if fee and terms else None,
    )
    return made, [(leg.id, expires_at)] if expires_at else []
