"""What a command handler works with: the group's unit of work, and the writer's memory.

A ``Writer`` exists for one run of one group (``Books._run_group``): every command of the
group reads and saves through it, one after another, on the writer thread. What the
writer remembers between groups (``WriterMemory``) belongs to the ``Books``, which lends
it to each group's ``Writer``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from commands.unit_of_work import Position, UnitOfWork
from ledger.accounts import Account, Balance
from ledger.errors import AccountNotFound
from ledger.fees import FeeRule, FeeTerms
from ledger.ids import (
    account_uuid,
    fee_account_id,
    fee_rule_uuid,
    issuance_account_id,
    payout_uuid,
    transaction_uuid,
    transfer_uuid,
)
from ledger.monitors import MAX_MONITORS
from ledger.payout_runs import PayoutRun, run_uuid
from ledger.payouts import Payout
from ledger.system_accounts import SystemAccount
from ledger.transactions import Transaction
from ledger.transfers import Transfer

A = TypeVar("A", bound=Aggregate)

Sides = dict[str, Account | SystemAccount]
"""The accounts one command moves money on, by id: one object per account for the whole
command, so every change is saved once."""


@dataclass
class WriterMemory:
    """What the writer thread knows without asking the store again.

    Only the writer thread (``commands.group_commit``) touches it."""

    fee_rules: dict[UUID, tuple[int, FeeTerms | None]] = field(default_factory=dict)
    system_accounts_seen: set[str] = field(default_factory=set)


class Writer:
    """One group's reads and saves, as its handlers see them."""

    def __init__(
        self,
        work: UnitOfWork,
        *,
        clock: Callable[[], datetime],
        payout_assets: Mapping[str, str],
        memory: WriterMemory,
    ) -> None:
        self.work = work
        self.clock = clock
        self.payout_assets = payout_assets  # ledger asset -> Stellar asset
        self.memory = memory

    # Reads: what the group has seen so far, with this command's changes ---------------

    def account(self, account_id: str) -> Account:
        account = self.work.get(account_uuid(account_id))
        if account is None:
            raise AccountNotFound(f"account {account_id!r} does not exist")
        return account  # type: ignore[return-value]

    def transfer(self, transfer_id: str) -> Transfer | None:
        return self.work.get(transfer_uuid(transfer_id))  # type: ignore[return-value]

    def transaction(self, transaction_id: str) -> Transaction | None:
        return self.work.get(transaction_uuid(transaction_id))  # type: ignore[return-value]

    def payout(self, payout_id: str) -> Payout | None:
        return self.work.get(payout_uuid(payout_id))  # type: ignore[return-value]

    def payout_run(self, run_id: str) -> PayoutRun | None:
        return self.work.get(run_uuid(run_id))  # type: ignore[return-value]

    def side(self, account_id: str, sides: Sides | None = None) -> Account | SystemAccount:
        """The account to move money on: loaded for a client account, write-only for a
        system one. With ``sides``, the object the command already uses for it."""
        if sides is None:
            return SystemAccount(account_id) if account_id.startswith("$") else self.account(account_id)
        if account_id not in sides:
            sides[account_id] = self.side(account_id)
        return sides[account_id]

    def as_created(self, aggregate: A) -> A:
        """An aggregate as its creating command left it, for answering a retry the same way."""
        return aggregate if aggregate.version == 1 else self.work.get_version(aggregate.id, 1)  # type: ignore[return-value]

    def position_of(self, originator_id: UUID, version: int = 1) -> Position | int:
        """The position of one of an aggregate's events (that of the command that recorded it)."""
        return self.work.position_of(originator_id, version)

    def balances(self, sides: Mapping[str, Account | SystemAccount]) -> dict[str, Balance]:
        """The client accounts' balances as the command leaves them, for its answer."""
        return {i: side.balance for i, side in sides.items() if isinstance(side, Account) and not side.system}

    def recorded_balances(
        self, position: Position | int, transfer_ids: Sequence[str], account_ids: Sequence[str]
    ) -> dict[str, Balance]:
        """The balances a command's movements recorded, to answer its retry as the first
        time: the client accounts among ``account_ids`` that it moved for ``transfer_ids``.
        (A command saves at most eight events per transfer it moves money for, and a
        crossing per monitor of each account it moves.)"""
        streams = {account_uuid(account_id): account_id for account_id in account_ids}
        lookback = 8 * len(transfer_ids) + MAX_MONITORS * len(streams) + 16
        found = self.work.recorded_balances(position, set(transfer_ids), streams.keys(), lookback)
        return {streams[stream]: balance for stream, balance in found.items()}

    def fee_terms(self, asset: str, operation: str, read: dict[str, int]) -> FeeTerms | None:
        """The active fee terms, noting in ``read`` the rule's version (0: no rule).

        Rules are remembered without asking the store each time: the save checks the
        version noted here, and a rule that changed meanwhile makes the save conflict,
        which empties this memory before the command runs again."""
        rule_id = fee_rule_uuid(asset, operation)
        known = self.memory.fee_rules.get(rule_id)
        if known is None:
            rule: FeeRule | None = self.work.get(rule_id)  # type: ignore[assignment]
            known = (0, None) if rule is None else (rule.version, rule.terms if rule.terms.active else None)
            self.memory.fee_rules[rule_id] = known
        read[str(rule_id)] = known[0]
        return known[1]

    def forget_fee_rule(self, rule_id: UUID) -> None:
        """A rule this group changed is read again from the store by the next command."""
        self.memory.fee_rules.pop(rule_id, None)

    def missing_system_accounts(self, asset: str, *account_ids: str) -> list[Account]:
        """System accounts not opened yet, to open in the same save as their first use
        (default: the asset's issuance and fee accounts)."""
        missing = []
        for account_id in account_ids or (issuance_account_id(asset), fee_account_id(asset)):
            if account_id in self.memory.system_accounts_seen:
                continue
            if self.work.exists(account_uuid(account_id)):
                self.memory.system_accounts_seen.add(account_id)  # opened for good: no need to ask again
            else:
                missing.append(Account(account_id=account_id, asset=asset, overdraft_limit=0, system=True, metadata={}))
        return missing

    # Changes ----------------------------------------------------------------------

    def move(
        self,
        sides: Sides,
        transfer_id: str,
        kind: str,
        debit_id: str,
        credit_id: str,
        amount: int,
        *,
        pending: bool = False,
        expires_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        asset: str | None = None,
        **details: Any,
    ) -> Transfer:
        """Debit one side and credit the other (at once, or pending), and record the transfer.

        ``asset`` is needed only between two system accounts (which do not know theirs)."""
        debit, credit = self.side(debit_id, sides), self.side(credit_id, sides)
        window = self.clock().astimezone(UTC).date().isoformat()  # counts toward the outgoing limits
        if pending:
            debit.add_pending_debit(transfer_id, amount, window)
            credit.add_pending_credit(transfer_id, amount)
        else:
            debit.debit(transfer_id, amount, window)
            credit.credit(transfer_id, amount)
        return Transfer(
            transfer_id=transfer_id,
            kind=kind,
            debit_account=debit_id,
            credit_account=credit_id,
            asset=asset or _asset_of(debit, credit),
            amount=amount,
            metadata=metadata or {},
            pending=pending,
            expires_at=expires_at,
            **details,
        )

    def save(self, *aggregates: Any, **side_tables: Any) -> Position:
        """Add the aggregates' new events to the group's save; the command's position
        (its last event's) is known once the group is saved. Accounts record the
        thresholds the command took them across first (``Account.watch``)."""
        for aggregate in aggregates:
            if isinstance(aggregate, Account):
                aggregate.watch()
        return self.work.add(*aggregates, **side_tables)


def saveable(*sides: Account | SystemAccount) -> list[Any]:
    """Aggregates to save with their version check, or the events of system accounts."""
    items: list[Any] = []
    for side in sides:
        items.extend(side.events if isinstance(side, SystemAccount) else [side])
    return items


def _asset_of(*sides: Account | SystemAccount) -> str:
    for side in sides:
        if isinstance(side, Account):
            return side.asset
    raise ValueError("a transfer needs at least one client account")
