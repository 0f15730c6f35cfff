"""The ledger application: its commands, run in groups, and the reads behind them.

Each public command method submits the command's handler (``commands.handlers``, one
module per command family) with the ids of what it will read; the group runner applies
a group's commands one after another through one ``Writer`` and saves them together.

Every write is idempotent on its client id. A concurrent writer (a version conflict)
or a commit whose acknowledgement was lost (a duplicate key on retry) both surface as
``IntegrityError``; the group then runs again from the start, and each handler finds
either fresh state or its own earlier result.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent
from eventsourcing.utils import Environment

from auth.keys import acting_key
from commands.group_commit import GroupCommit, Ticket
from commands.handlers import accounts, after_transfer, deposits, operator, payout_runs, payouts, transfers
from commands.handlers.after_transfer import pending_hints
from commands.handlers.context import Writer, WriterMemory
from commands.handlers.transfers import leg_hints
from commands.messages import (
    AccountAction,
    CancelPayout,
    ChangePolicy,
    Deposit,
    ExecuteTransaction,
    OpenAccount,
    PayoutRunAction,
    PostTransfer,
    ReassignSuspense,
    RemoveMonitor,
    RequestPayout,
    ReverseTransfer,
    SetFeeRule,
    SetMonitor,
    SweepFees,
    TransferBatch,
    TransferFunds,
    UploadPayoutRun,
    VoidTransfer,
)
from commands.unit_of_work import AggregateCache, UnitOfWork, resolved
from ledger.accounts import Account
from ledger.distribution import DistributionBalance
from ledger.errors import AccountNotFound, Busy, LedgerError
from ledger.ids import account_uuid, chain_deposit_id, payout_uuid, transaction_uuid, transfer_uuid
from ledger.payout_runs import PayoutRun, Row, RowChunk, chunk_uuid, row_payout_id, run_uuid
from ledger.payouts import Payout
from ledger.transactions import Transaction
from ledger.transfers import Transfer
from runtime import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class ActorMapper(Mapper[UUID]):
    """Stamps every event a command writes with who asked for it: the API key of the
    request (``auth.keys.acting_key``), else the service's own name (``service:chain``).

    It is part of the event's stored state, so the hash chain covers it, the export
    carries it, and the relay puts it on Kafka (``ce_ledgerkeyid``)."""

    def __init__(self, transcoder: Any, actor: Callable[[], str | None]) -> None:
        super().__init__(transcoder=transcoder)
        self.actor = actor

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if "key_id" not in vars(domain_event):
            key_id = self.actor()
            if key_id is not None:
                object.__setattr__(domain_event, "key_id", key_id)
        return super().to_stored_event(domain_event)


class Books(Application[UUID]):
    """The books: the event-sourced application that runs every command on the event store
    and reads it back. Its eventsourcing name stays "Ledger": the event table is named
    after it (``ledger_events``)."""

    name = "Ledger"

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Only the configuration we pass in: the library would otherwise also read the
        process environment, where its ``LEDGER_*`` lookups would collide with ours."""
        return Environment(name, dict(env or {}))

    def __init__(
        self,
        env: dict[str, str],
        *,
        write_attempts: int = 20,
        clock: Callable[[], datetime] = utc_now,
        payout_assets: Mapping[str, str] | None = None,
        actor: str | None = None,
        aggregate_cache_size: int = 50_000,
        max_group: int = 256,
    ) -> None:
        self.actor = actor  # who asks when no API key does (a service: "service:chain")
        super().__init__(env)
        self.write_attempts = write_attempts
        self.clock = clock
        self.payout_assets = dict(payout_assets or {})  # ledger asset -> Stellar asset
        # Only the writer thread (commands.group_commit) touches what follows.
        self._memory = WriterMemory()
        self._cache = AggregateCache(aggregate_cache_size)
        self._writer: Writer | None = None  # the group being run's
        self._groups = GroupCommit(self._run_group, max_group=max_group)
        self.conflicts = 0  # groups saved again after a concurrent writer got there first
        self.groups = 0  # groups run to their end (saved, or with nothing to save)
        self.grouped = 0  # commands in them: grouped / groups is the mean group size

    def close(self) -> None:
        self._groups.close()
        super().close()

    def waiting(self) -> int:
        """How many commands wait for the next group (the one being applied not counted)."""
        return self._groups.waiting()

    def construct_mapper(self) -> Mapper[UUID]:
        return ActorMapper(self.construct_transcoder(), lambda: acting_key.get() or self.actor)

    # Commands: each submits its handler, with the ids of what it will read ----------

    def open_account(self, cmd: OpenAccount) -> dict[str, Any]:
        return self._submit(lambda w: accounts.open_account(w, cmd), account_uuid(cmd.id))

    def set_fee_rule(self, cmd: SetFeeRule) -> dict[str, Any]:
        return self._submit(lambda w: accounts.set_fee_rule(w, cmd))

    def change_policy(self, cmd: ChangePolicy) -> dict[str, Any]:
        return self._submit(lambda w: accounts.change_policy(w, cmd), account_uuid(cmd.account))

    def account_action(self, cmd: AccountAction) -> dict[str, Any]:
        return self._submit(lambda w: accounts.account_action(w, cmd), account_uuid(cmd.account))

    def set_monitor(self, cmd: SetMonitor) -> dict[str, Any]:
        return self._submit(lambda w: accounts.set_monitor(w, cmd), account_uuid(cmd.account))

    def remove_monitor(self, cmd: RemoveMonitor) -> dict[str, Any]:
        return self._submit(lambda w: accounts.remove_monitor(w, cmd), account_uuid(cmd.account))

    def deposit(self, cmd: Deposit) -> dict[str, Any]:
        return self._submit(lambda w: deposits.deposit(w, cmd), account_uuid(cmd.account), transfer_uuid(cmd.id))

    def transfer(self, cmd: TransferFunds) -> dict[str, Any]:
        return self._submit(lambda w: transfers.transfer(w, cmd), *leg_hints(cmd))

    def transaction(self, cmd: ExecuteTransaction) -> dict[str, Any]:
        return self._submit(
            lambda w: transfers.transaction(w, cmd),
            transaction_uuid(cmd.id),
            *(h for leg in cmd.transfers for h in leg_hints(leg)),
        )

    def transfer_batch(self, cmd: TransferBatch) -> list[dict[str, Any] | LedgerError]:
        """Each transfer's answer (or refusal), in order, as if each had been sent alone one
        after the other; the ones that go through are saved in one transaction.

        One save for many transfers is what lets the write rate go past what one round
        trip per transfer allows (TigerBeetle's batches, on a smaller scale)."""
        return self._submit(
            lambda w: transfers.transfer_batch(w, cmd), *(h for leg in cmd.transfers for h in leg_hints(leg))
        )

    def reverse_transfer(self, cmd: ReverseTransfer) -> dict[str, Any]:
        return self._submit(
            lambda w: after_transfer.reverse_transfer(w, cmd), transfer_uuid(cmd.transfer), transfer_uuid(cmd.id)
        )

    def post_transfer(self, cmd: PostTransfer) -> dict[str, Any]:
        return self._submit(lambda w: after_transfer.post_transfer(w, cmd), *pending_hints(cmd.id))

    def void_transfer(self, cmd: VoidTransfer) -> dict[str, Any]:
        return self._submit(lambda w: after_transfer.void_transfer(w, cmd), *pending_hints(cmd.id))

    def expire_transfer(self, transfer_id: str) -> bool:
        """Void a pending transfer whose timeout has passed; False if there was nothing to do."""
        return self._submit(lambda w: after_transfer.expire_transfer(w, transfer_id), *pending_hints(transfer_id))

    def request_payout(self, cmd: RequestPayout) -> dict[str, Any]:
        return self._submit(lambda w: payouts.request_payout(w, cmd), account_uuid(cmd.account), payout_uuid(cmd.id))

    # What the chain worker reports; each is idempotent, and a payout ends one way only.

    def confirm_payout(self, payout_id: str, tx_hash: str, ledger: int) -> dict[str, Any]:
        """Paid on chain: the payout's pending transfer is posted."""
        return self._submit(
            lambda w: payouts.resolve_payout(w, payout_id, confirmed=(tx_hash, ledger)), payout_uuid(payout_id)
        )

    def fail_payout(self, payout_id: str, reason: str) -> dict[str, Any]:
        """Never paid on chain (and never can be): the payout's pending transfer is
        voided, the money is back."""
        return self._submit(lambda w: payouts.resolve_payout(w, payout_id, failure=reason), payout_uuid(payout_id))

    def credit_from_chain(self, payment_id: str, asset: str, amount: int, memo: str | None) -> dict[str, Any]:
        """A payment into the distribution account, credited once to the account its memo
        names (or to the asset's suspense account when no open account of that asset
        has that id). The money comes from the clearing account, which mirrors what the
        chain holds for the ledger."""
        return self._submit(
            lambda w: deposits.credit_from_chain(w, payment_id, asset, amount, memo),
            transfer_uuid(chain_deposit_id(payment_id)),
        )

    def judge_distribution_balance(self, asset: str, distribution: str, balance: int, needed: int, floor: int) -> bool:
        """The chain worker's periodic look at the distribution account: a crossing into
        low (or back) is recorded once, whichever worker sees it first."""
        return self._submit(
            lambda w: payouts.judge_distribution_balance(w, asset, distribution, balance, needed, floor),
            DistributionBalance.create_id(distribution, asset),
        )

    def note_payout_attempt(self, payout_id: str, attempt: int, tx_hash: str, error: str | None) -> dict[str, Any]:
        return self._submit(
            lambda w: payouts.note_payout(w, payout_id, lambda p: p.note_attempt(attempt, tx_hash, error)),
            payout_uuid(payout_id),
        )

    def report_payout_stuck(self, payout_id: str, reason: str) -> dict[str, Any]:
        return self._submit(
            lambda w: payouts.note_payout(w, payout_id, lambda p: p.report_stuck(reason)), payout_uuid(payout_id)
        )

    # Payout runs: a client's file and actions, then the chain worker's steps -----------

    def upload_payout_run(self, cmd: UploadPayoutRun) -> dict[str, Any]:
        return self._submit(lambda w: payout_runs.upload_run(w, cmd), run_uuid(cmd.id))

    def payout_run_action(self, cmd: PayoutRunAction) -> dict[str, Any]:
        return self._submit(lambda w: payout_runs.run_action(w, cmd), run_uuid(cmd.run))

    def request_run_rows(self, run_id: str, attempt: int, rows: list[Row]) -> dict[str, int]:
        """Request the payouts of some rows of a started run (the chain worker's step)."""
        return self._submit(
            lambda w: payout_runs.request_rows(w, run_id, attempt, rows),
            run_uuid(run_id),
            *(payout_uuid(row_payout_id(run_id, row.id, attempt)) for row in rows),
            *{account_uuid(row.account) for row in rows},
        )

    def complete_payout_run(self, run_id: str, succeeded: int, failed: int) -> bool:
        return self._submit(lambda w: payout_runs.complete_run(w, run_id, succeeded, failed), run_uuid(run_id))

    # An operator's corrections (admin keys) ----------------------------------------------

    def cancel_payout(self, cmd: CancelPayout) -> dict[str, Any]:
        """Ask the chain worker to end a payout unpaid; it does once the chain shows that
        none of its envelopes applied or can (and confirms it if one did)."""
        return self._submit(
            lambda w: payouts.note_payout(w, cmd.id, lambda p: p.request_cancel(cmd.reason)), payout_uuid(cmd.id)
        )

    def reassign_suspense(self, cmd: ReassignSuspense) -> dict[str, Any]:
        return self._submit(lambda w: operator.reassign_suspense(w, cmd), transfer_uuid(cmd.deposit))

    def sweep_fees(self, cmd: SweepFees) -> dict[str, Any]:
        return self._submit(lambda w: operator.sweep_fees(w, cmd), transfer_uuid(cmd.id), account_uuid(cmd.account))

    # Reads outside commands: for tests, the HTTP tenant checks and the chain worker ---

    def account(self, account_id: str) -> Account:
        try:
            return self.repository.get(account_uuid(account_id))
        except AggregateNotFoundError:
            raise AccountNotFound(f"account {account_id!r} does not exist") from None

    def transfer_record(self, transfer_id: str) -> Transfer | None:
        try:
            return self.repository.get(transfer_uuid(transfer_id))
        except AggregateNotFoundError:
            return None

    def transaction_record(self, transaction_id: str) -> Transaction | None:
        try:
            return self.repository.get(transaction_uuid(transaction_id))
        except AggregateNotFoundError:
            return None

    def payout_record(self, payout_id: str) -> Payout | None:
        try:
            return self.repository.get(payout_uuid(payout_id))
        except AggregateNotFoundError:
            return None

    def run_record(self, run_id: str) -> PayoutRun | None:
        try:
            return self.repository.get(run_uuid(run_id))
        except AggregateNotFoundError:
            return None

    def run_chunk(self, run_id: str, index: int) -> RowChunk | None:
        try:
            return self.repository.get(chunk_uuid(run_id, index))
        except AggregateNotFoundError:
            return None

    def head_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    # The group runner ---------------------------------------------------------------

    def _submit(self, handler: Callable[[Writer], T], *hints: UUID) -> T:
        """Run a command in the next group (see ``commands.group_commit``) and wait for its
        answer; ``hints`` are the aggregates it will read, fetched with its group's."""
        ticket = Ticket(lambda: handler(self._current_writer()), hints, acting_key.get() or self.actor)
        return self._groups.submit(ticket)  # type: ignore[no-any-return]

    def _current_writer(self) -> Writer:
        if self._writer is None:
            raise RuntimeError("commands read and write only inside a group (Books._run_group)")
        return self._writer

    def _run_group(self, tickets: list[Ticket]) -> None:
        """Apply the commands one after another in memory, each in a scope of its own (a
        refused one leaves nothing behind), then save the accepted ones in one
        transaction and answer each with its own result or error.

        A concurrent writer elsewhere (another process) makes the save conflict on a
        version; the whole group then runs again on fresh state. Nothing is answered
        before the save, so a crash loses only unanswered commands, and never part of one.
        """
        for attempt in range(1, self.write_attempts + 1):
            work = UnitOfWork(self.mapper, self.recorder, self._cache)
            self._writer = Writer(work, clock=self.clock, payout_assets=self.payout_assets, memory=self._memory)
            outcomes: list[tuple[Ticket, Any, BaseException | None]] = []
            try:
                work.prefetch(hint for ticket in tickets for hint in ticket.hints)
                for ticket in tickets:
                    work.begin(ticket.actor)
                    try:
                        result = ticket.handler()
                    except Exception as exc:  # noqa: BLE001  # a refusal (LedgerError), or this command's own failure
                        work.reject()
                        outcomes.append((ticket, None, exc))
                    else:
                        work.accept()
                        outcomes.append((ticket, result, None))
                positions = work.commit()
            except IntegrityError:
                self.conflicts += 1
                metrics.write_conflicts().inc()
                log.debug("write conflict, running the group again", extra={"attempt": attempt})
                self._memory.fee_rules.clear()  # it may have been a rule that changed
                time.sleep(random.uniform(0, 0.002 * attempt))
                continue
            except Exception as exc:  # noqa: BLE001  # the store is unreachable: nothing of the group was saved
                self._memory.fee_rules.clear()
                for ticket in tickets:
                    ticket.fail(exc)
                return
            finally:
                self._writer = None
            self.groups += 1
            self.grouped += len(tickets)
            metrics.group_size().observe(len(tickets))
            log.debug("group saved", extra={"commands": len(tickets), "events": len(positions), "attempt": attempt})
            for ticket, result, error in outcomes:
                if error is not None:
                    ticket.fail(error)
                else:
                    ticket.answer(resolved(result, positions))
            return
        for ticket in tickets:
            ticket.fail(Busy(f"the write kept conflicting with concurrent writes ({self.write_attempts} attempts)"))
