"""Command handlers: get the aggregates, call them, save them in one transaction.

Every write is idempotent on its client id. A concurrent writer (a version conflict)
or a commit whose acknowledgement was lost (a duplicate key on retry) both surface as
``IntegrityError``; the handler then runs again from the start, and finds either
fresh state or its own earlier result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent
from eventsourcing.utils import Environment

from auth.keys import acting_key
from commands.group_commit import GroupCommit, Ticket
from commands.messages import (
    AccountAction,
    ChangePolicy,
    Deposit,
    ExecuteTransaction,
    OpenAccount,
    PostTransfer,
    RequestPayout,
    ReverseTransfer,
    SetFeeRule,
    TransferBatch,
    TransferFunds,
    VoidTransfer,
)
from commands.unit_of_work import AggregateCache, Position, UnitOfWork, resolved
from ledger.accounts import Account, SystemAccount
from ledger.errors import (
    AccountNotFound,
    AssetMismatch,
    AssetNotOnChain,
    Busy,
    FeeExceedsAmount,
    IdConflict,
    InvalidRequest,
    LedgerError,
    PayoutHold,
    PayoutNotFound,
    SameAccount,
    TransferNotFound,
    TransferNotPending,
)
from ledger.fees import FeeRule, FeeTerms
from ledger.ids import (
    CLIENT_ID,
    account_uuid,
    chain_deposit_id,
    clearing_account_id,
    fee_account_id,
    fee_rule_uuid,
    fee_transfer_id,
    issuance_account_id,
    payout_hold_id,
    payout_uuid,
    suspense_account_id,
    transaction_uuid,
    transfer_uuid,
)
from ledger.money import Asset
from ledger.payouts import Payout
from ledger.transactions import Transaction
from ledger.transfers import POSTED, VOIDED, Transfer
from runtime.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


def event_store_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's configuration, derived from our settings."""
    url = urlsplit(settings.require("database_url"))
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_POOL_SIZE": str(settings.db_pool_size),
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "no",
        # Tables come from migrations (`ledger db migrate`), never from the library.
        "CREATE_TABLE": "no",
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "APPLICATION_RECORDER_TOPIC": "commands.recorder:LedgerRecorder",
    }


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


class Ledger(Application[UUID]):
    """The event-sourced ledger; its events live in the ``ledger_events`` table."""

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
        self._system_accounts_seen: set[str] = set()
        self._fee_rules: dict[UUID, tuple[int, FeeTerms | None]] = {}
        self._cache = AggregateCache(aggregate_cache_size)
        self._work: UnitOfWork | None = None
        self._groups = GroupCommit(self._run_group, max_group=max_group)
        self.conflicts = 0  # groups saved again after a concurrent writer got there first

    def close(self) -> None:
        self._groups.close()
        super().close()

    def waiting(self) -> int:
        """How many commands wait for the next group (the one being applied not counted)."""
        return self._groups.waiting()

    def construct_mapper(self) -> Mapper[UUID]:
        return ActorMapper(self.construct_transcoder(), lambda: acting_key.get() or self.actor)

    # Commands -----------------------------------------------------------------

    def open_account(self, cmd: OpenAccount) -> dict[str, Any]:
        return self._submit(lambda: self._open_account(cmd), account_uuid(cmd.id))

    def set_fee_rule(self, cmd: SetFeeRule) -> dict[str, Any]:
        return self._submit(lambda: self._set_fee_rule(cmd))

    def change_policy(self, cmd: ChangePolicy) -> dict[str, Any]:
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

        return self._submit(lambda: self._change_account(cmd.account, change), account_uuid(cmd.account))

    def account_action(self, cmd: AccountAction) -> dict[str, Any]:
        actions: dict[str, Callable[[Account], bool]] = {
            "freeze": Account.freeze,
            "unfreeze": Account.unfreeze,
            "close": Account.close,
        }
        return self._submit(lambda: self._change_account(cmd.account, actions[cmd.action]), account_uuid(cmd.account))

    def deposit(self, cmd: Deposit) -> dict[str, Any]:
        return self._submit(lambda: self._deposit(cmd), account_uuid(cmd.account), transfer_uuid(cmd.id))

    def transfer(self, cmd: TransferFunds) -> dict[str, Any]:
        return self._submit(lambda: self._transfer(cmd), *_leg_hints(cmd))

    def transaction(self, cmd: ExecuteTransaction) -> dict[str, Any]:
        return self._submit(
            lambda: self._transaction(cmd),
            transaction_uuid(cmd.id),
            *(h for leg in cmd.transfers for h in _leg_hints(leg)),
        )

    def transfer_batch(self, cmd: TransferBatch) -> list[dict[str, Any] | LedgerError]:
        """Each transfer's answer (or refusal), in order, as if each had been sent alone one
        after the other; the ones that go through are saved in one transaction.

        One save for many transfers is what lets the write rate go past what one round
        trip per transfer allows (TigerBeetle's batches, on a smaller scale)."""
        return self._submit(lambda: self._transfer_batch(cmd), *(h for leg in cmd.transfers for h in _leg_hints(leg)))

    def reverse_transfer(self, cmd: ReverseTransfer) -> dict[str, Any]:
        return self._submit(lambda: self._reverse_transfer(cmd), transfer_uuid(cmd.transfer), transfer_uuid(cmd.id))

    def post_transfer(self, cmd: PostTransfer) -> dict[str, Any]:
        return self._submit(lambda: self._post_transfer(cmd), *_hold_hints(cmd.id))

    def void_transfer(self, cmd: VoidTransfer) -> dict[str, Any]:
        return self._submit(lambda: self._void_transfer(cmd), *_hold_hints(cmd.id))

    def request_payout(self, cmd: RequestPayout) -> dict[str, Any]:
        return self._submit(lambda: self._request_payout(cmd), account_uuid(cmd.account), payout_uuid(cmd.id))

    # What the chain worker reports; each is idempotent, and a payout ends one way only.

    def confirm_payout(self, payout_id: str, tx_hash: str, ledger: int) -> dict[str, Any]:
        """Paid on chain: the hold is posted."""
        return self._submit(
            lambda: self._resolve_payout(payout_id, confirmed=(tx_hash, ledger)), payout_uuid(payout_id)
        )

    def fail_payout(self, payout_id: str, reason: str) -> dict[str, Any]:
        """Never paid on chain (and never can be): the hold is voided, the money is back."""
        return self._submit(lambda: self._resolve_payout(payout_id, failure=reason), payout_uuid(payout_id))

    def credit_from_chain(self, payment_id: str, asset: str, amount: int, memo: str | None) -> dict[str, Any]:
        """A payment into the distribution account, credited once to the account its memo
        names (or to the asset's suspense account when no open account of that asset
        has that id). The money comes from the clearing account, which mirrors what the
        chain holds for the ledger."""
        return self._submit(
            lambda: self._credit_from_chain(payment_id, asset, amount, memo),
            transfer_uuid(chain_deposit_id(payment_id)),
        )

    def note_payout_attempt(self, payout_id: str, attempt: int, tx_hash: str, error: str | None) -> dict[str, Any]:
        return self._submit(
            lambda: self._note_payout(payout_id, lambda p: p.note_attempt(attempt, tx_hash, error)),
            payout_uuid(payout_id),
        )

    def report_payout_stuck(self, payout_id: str, reason: str) -> dict[str, Any]:
        return self._submit(
            lambda: self._note_payout(payout_id, lambda p: p.report_stuck(reason)), payout_uuid(payout_id)
        )

    def expire_transfer(self, transfer_id: str) -> bool:
        """Void a pending transfer whose timeout has passed; False if there was nothing to do."""
        return self._submit(lambda: self._expire_transfer(transfer_id), *_hold_hints(transfer_id))

    # Reads used by handlers and tests ----------------------------------------------

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

    def head_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    # Reads inside a command: the group's unit of work --------------------------------

    @property
    def work(self) -> UnitOfWork:
        if self._work is None:
            raise RuntimeError("commands read and write only inside a group (Ledger._run_group)")
        return self._work

    def _account(self, account_id: str) -> Account:
        account = self.work.get(account_uuid(account_id))
        if account is None:
            raise AccountNotFound(f"account {account_id!r} does not exist")
        return account  # type: ignore[return-value]

    def _transfer_record(self, transfer_id: str) -> Transfer | None:
        return self.work.get(transfer_uuid(transfer_id))  # type: ignore[return-value]

    def _transaction_record(self, transaction_id: str) -> Transaction | None:
        return self.work.get(transaction_uuid(transaction_id))  # type: ignore[return-value]

    def _payout_record(self, payout_id: str) -> Payout | None:
        return self.work.get(payout_uuid(payout_id))  # type: ignore[return-value]

    def _side_of(self, account_id: str) -> Account | SystemAccount:
        """The account to move money on: loaded for a client account, write-only for a system one."""
        if account_id.startswith("$"):
            return SystemAccount(account_id)
        return self._account(account_id)

    # Handlers -----------------------------------------------------------------

    def _open_account(self, cmd: OpenAccount) -> dict[str, Any]:
        asset = Asset.parse(cmd.asset)
        try:
            existing = self._account(cmd.id)
        except AccountNotFound:
            existing = None
        if existing is not None:
            if existing.opened_with != (str(asset), cmd.overdraft_limit, cmd.metadata):
                raise IdConflict(f"account {cmd.id!r} already exists with a different body")
            return self._opened_result(existing, self._position_of(existing.id))

        account = Account(
            account_id=cmd.id,
            asset=str(asset),
            overdraft_limit=cmd.overdraft_limit,
            system=False,
            metadata=cmd.metadata,
        )
        to_save = [*self._missing_system_accounts(str(asset)), account]
        position = self._save(*to_save)
        return self._opened_result(account, position)

    def _missing_system_accounts(self, asset: str, *account_ids: str) -> list[Account]:
        """System accounts not opened yet, to open in the same save as their first use
        (default: the asset's issuance and fee accounts)."""
        missing = []
        for account_id in account_ids or (issuance_account_id(asset), fee_account_id(asset)):
            if account_id in self._system_accounts_seen:
                continue
            if self._exists(account_uuid(account_id)):
                self._system_accounts_seen.add(account_id)  # opened for good: no need to ask again
            else:
                missing.append(Account(account_id=account_id, asset=asset, overdraft_limit=0, system=True, metadata={}))
        return missing

    def _set_fee_rule(self, cmd: SetFeeRule) -> dict[str, Any]:
        asset = str(Asset.parse(cmd.asset))
        rule: FeeRule | None = self.work.get(fee_rule_uuid(asset, cmd.operation))  # type: ignore[assignment]
        if rule is None:
            rule = FeeRule(asset=asset, operation=cmd.operation, terms=cmd.terms.as_dict())
        elif not rule.change(cmd.terms):
            return self._fee_rule_result(rule, self._position_of(rule.id, rule.version))
        position = self._save(*self._missing_system_accounts(asset), rule)
        self._fee_rules.pop(rule.id, None)
        return self._fee_rule_result(rule, position)

    def _change_account(self, account_id: str, change: Callable[[Account], bool]) -> dict[str, Any]:
        account = self._account(account_id)
        if account.system:
            raise InvalidRequest(f"account {account_id!r} is a system account")
        if change(account):
            return self._account_result(account, self._save(account))
        return self._account_result(account, self._position_of(account.id, account.version))

    def _deposit(self, cmd: Deposit) -> dict[str, Any]:
        account = self._account(cmd.account)
        if account.system:
            raise InvalidRequest(f"account {cmd.account!r} is a system account")
        asset = Asset.parse(account.asset)
        amount = asset.parse_amount(cmd.amount)
        issuance_id = issuance_account_id(account.asset)
        existing = self._transfer_record(cmd.id)
        if existing is not None:
            if not existing.same_request("deposit", issuance_id, account.account_id, amount, {}):
                raise IdConflict(f"deposit id {cmd.id!r} was already used with a different body")
            return self._deposit_result(self._as_created(existing), self._position_of(existing.id))
        transfer = Transfer(
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
        position = self._save(issuance, account, transfer)
        return self._deposit_result(transfer, position)

    def _transfer(self, cmd: TransferFunds) -> dict[str, Any]:
        existing = self._transfer_record(cmd.id)
        if existing is not None:
            return self._transfer_retried(cmd, existing)
        sides: dict[str, Account | SystemAccount] = {}
        rules: dict[str, int] = {}
        transfer, fee_legs, timeouts = self._charged_leg(cmd, sides, None, rules)
        # The transfer is saved last, so its first event carries the command's position.
        position = self._save(
            *_saveable(*sides.values()), *fee_legs, transfer, timeouts_set=timeouts, expected_versions=rules
        )
        return self._transfer_result(transfer, position)

    def _transfer_retried(self, cmd: TransferFunds, existing: Transfer) -> dict[str, Any]:
        """The answer to a transfer whose id is already used: the first answer, if the
        body is the same."""
        debit, credit, amount = self._leg_terms(cmd)
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
        return self._transfer_result(self._as_created(existing), self._position_of(existing.id))

    def _transfer_batch(self, cmd: TransferBatch) -> list[dict[str, Any] | LedgerError]:
        """Each transfer in a scope of its own: it stands or falls alone, as if sent alone."""
        if len({t.id for t in cmd.transfers}) != len(cmd.transfers):
            raise InvalidRequest("transfers must have distinct ids")
        answers: list[dict[str, Any] | LedgerError] = []
        for leg in cmd.transfers:
            try:
                with self.work.scope():
                    answers.append(self._transfer(leg))
            except LedgerError as exc:
                answers.append(exc)
        return answers

    def _transaction(self, cmd: ExecuteTransaction) -> dict[str, Any]:
        if len({leg.id for leg in cmd.transfers}) != len(cmd.transfers):
            raise InvalidRequest("transfers must have distinct ids")
        fingerprint = transaction_fingerprint(cmd)
        existing = self._transaction_record(cmd.id)
        if existing is not None:
            if existing.fingerprint != fingerprint:
                raise IdConflict(f"transaction id {cmd.id!r} was already used with a different body")
            recorded = [self._transfer_record(t) for t in existing.transfer_ids]
            originals = [self._as_created(t) for t in recorded if t]
            return self._transaction_result(cmd.id, originals, self._position_of(existing.id))
        sides: dict[str, Account | SystemAccount] = {}
        rules: dict[str, int] = {}
        transfers: list[Transfer] = []
        to_save: list[Transfer] = []
        timeouts: list[tuple[str, datetime]] = []
        for index, leg in enumerate(cmd.transfers):
            try:
                if self._transfer_record(leg.id) is not None:
                    raise IdConflict(f"transfer id {leg.id!r} is already used")
                transfer, fee_legs, timeout = self._charged_leg(leg, sides, cmd.id, rules)
            except LedgerError as exc:
                raise type(exc)(f"transfers[{index}]: {exc.detail}") from None
            transfers.append(transfer)
            to_save.extend([*fee_legs, transfer])
            timeouts.extend(timeout)
        record = Transaction(
            transaction_id=cmd.id, transfer_ids=[t.transfer_id for t in transfers], fingerprint=fingerprint
        )
        position = self._save(
            *_saveable(*sides.values()), *to_save, record, timeouts_set=timeouts, expected_versions=rules
        )
        return self._transaction_result(cmd.id, transfers, position)

    def _charged_leg(
        self,
        leg: TransferFunds,
        sides: dict[str, Account | SystemAccount],
        transaction_id: str | None,
        rules: dict[str, int],
    ) -> tuple[Transfer, list[Transfer], list[tuple[str, datetime]]]:
        """One transfer and, if the asset's fee rule charges it, its fee leg; nothing saved.

        The fee rule read is noted in ``rules`` (stream id to version), and the save
        checks it is still the latest, so a rule changed meanwhile makes the command run
        again with the new rule."""
        debit, _, amount = self._leg_terms(leg, sides)
        terms = self._fee_terms(debit.asset, "transfer", rules)
        fee = terms.fee(amount) if terms else 0
        net = amount - fee if terms and terms.payer == "recipient" else amount
        if net <= 0:
            unit = Asset.parse(debit.asset)
            raise FeeExceedsAmount(f"the fee of {unit.format(fee)} leaves nothing of {unit.format(amount)}")
        transfer, timeouts = self._apply_leg(leg, sides, transaction_id, amount=net, fee=fee, terms=terms)
        if not fee:
            return transfer, [], timeouts
        fee_leg = self._move(
            sides,
            fee_transfer_id(leg.id),
            "fee",
            debit.account_id,
            fee_account_id(debit.asset),
            fee,
            pending=leg.pending,
            expires_at=transfer.expires_at,
            fee_for=leg.id,
            transaction_id=transaction_id,
        )
        return transfer, [fee_leg], timeouts

    def _leg_terms(
        self, leg: TransferFunds, sides: dict[str, Account | SystemAccount] | None = None
    ) -> tuple[Account, Account, int]:
        """The two accounts of a leg (shared through ``sides`` across legs) and its amount."""
        if leg.debit_account == leg.credit_account:
            raise SameAccount("debit_account and credit_account must differ")
        loaded = {} if sides is None else sides
        for account_id in (leg.debit_account, leg.credit_account):
            if account_id not in loaded:
                loaded[account_id] = self._account(account_id)
        debit, credit = loaded[leg.debit_account], loaded[leg.credit_account]
        assert isinstance(debit, Account) and isinstance(credit, Account)  # client ids only
        if debit.asset != credit.asset:
            raise AssetMismatch(
                f"account {debit.account_id!r} holds {debit.asset} but "
                f"account {credit.account_id!r} holds {credit.asset}"
            )
        return debit, credit, Asset.parse(debit.asset).parse_amount(leg.amount)

    def _apply_leg(
        self,
        leg: TransferFunds,
        sides: dict[str, Account | SystemAccount],
        transaction_id: str | None,
        *,
        amount: int | None = None,
        fee: int = 0,
        terms: FeeTerms | None = None,
    ) -> tuple[Transfer, list[tuple[str, datetime]]]:
        """Move (or hold) one leg's money on the shared account objects; nothing is saved.

        ``amount`` overrides the leg's own when a fee is deducted from it."""
        debit, credit, leg_amount = self._leg_terms(leg, sides)
        debit.require_open()  # a frozen or closed account is the reason, before its funds
        credit.require_open()
        expires_at = self.clock() + timedelta(seconds=leg.timeout_seconds) if leg.timeout_seconds else None
        transfer = self._move(
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
        return transfer, [(leg.id, expires_at)] if expires_at else []

    def _move(
        self,
        sides: dict[str, Account | SystemAccount],
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
        """Debit one side and credit the other (or hold), and record the transfer.

        ``asset`` is needed only between two system accounts (which do not know theirs)."""
        debit, credit = self._side(sides, debit_id), self._side(sides, credit_id)
        window = self.clock().astimezone(UTC).date().isoformat()  # counts toward the outgoing limits
        if pending:
            debit.hold_debit(transfer_id, amount, window)
            credit.hold_credit(transfer_id, amount)
        else:
            debit.debit(transfer_id, amount, window)
            credit.credit(transfer_id, amount)
        return Transfer(
            transfer_id=transfer_id,
            kind=kind,
            debit_account=debit_id,
            credit_account=credit_id,
            asset=asset or self._asset_of(debit, credit),
            amount=amount,
            metadata=metadata or {},
            pending=pending,
            expires_at=expires_at,
            **details,
        )

    @staticmethod
    def _asset_of(*sides: Account | SystemAccount) -> str:
        for side in sides:
            if isinstance(side, Account):
                return side.asset
        raise ValueError("a transfer needs at least one client account")

    def _side(self, sides: dict[str, Account | SystemAccount], account_id: str) -> Account | SystemAccount:
        """One object per account for the whole command, so every change is saved once."""
        if account_id not in sides:
            sides[account_id] = self._side_of(account_id)
        return sides[account_id]

    def _fee_terms(self, asset: str, operation: str, read: dict[str, int]) -> FeeTerms | None:
        """The active fee terms, noting in ``read`` the rule's version (0: no rule).

        Rules are remembered without asking the store each time: the save checks the
        version noted here, and a rule that changed meanwhile makes the save conflict,
        which empties this memory before the command runs again."""
        rule_id = fee_rule_uuid(asset, operation)
        known = self._fee_rules.get(rule_id)
        if known is None:
            rule: FeeRule | None = self.work.get(rule_id)  # type: ignore[assignment]
            known = (0, None) if rule is None else (rule.version, rule.terms if rule.terms.active else None)
            self._fee_rules[rule_id] = known
        read[str(rule_id)] = known[0]
        return known[1]

    def _as_created(self, transfer: Transfer) -> Transfer:
        """A transfer as its creating command left it, for answering a retry the same way."""
        return transfer if transfer.version == 1 else self.work.get_version(transfer.id, 1)

    def _post_transfer(self, cmd: PostTransfer) -> dict[str, Any]:
        transfer = self._pending_transfer(cmd.id)
        fee_leg = self._transfer_record(fee_transfer_id(cmd.id)) if transfer.fee else None
        asset = Asset.parse(transfer.asset)
        gross = None if cmd.amount is None else asset.parse_amount(cmd.amount)
        if transfer.status == POSTED and transfer.pending_amount:
            posted = transfer.amount + (fee_leg.amount if fee_leg and transfer.fee_payer == "recipient" else 0)
            if gross not in (None, posted):
                raise TransferNotPending(f"transfer {cmd.id!r} was already posted for {asset.format(posted)}")
            return self._transfer_result(self.work.get_version(transfer.id, 2), self._position_of(transfer.id, 2))
        now = self.clock()
        transfer.check_postable(now)
        net, fee = gross, None
        if gross is not None and transfer.fee_terms:
            fee = FeeTerms(**transfer.fee_terms).fee(gross)
            if transfer.fee_payer == "recipient":
                net = gross - fee
                if net < 0:
                    raise FeeExceedsAmount(f"the fee of {asset.format(fee)} is more than {asset.format(gross)}")
        # The transfers' own rules first (how much may be posted), then the accounts'.
        legs = [(transfer, transfer.post(net, now))]
        if fee_leg is not None:
            legs.insert(0, (fee_leg, fee_leg.post(fee, now)))
        sides: dict[str, Account | SystemAccount] = {}
        for leg, posted_amount in legs:
            self._side(sides, leg.debit_account).post_pending_debit(leg.transfer_id, leg.pending_amount, posted_amount)
            self._side(sides, leg.credit_account).post_pending_credit(
                leg.transfer_id, leg.pending_amount, posted_amount
            )
        position = self._save(*_saveable(*sides.values()), *(leg for leg, _ in legs), timeouts_cleared=[cmd.id])
        return self._transfer_result(transfer, position)

    def _reverse_transfer(self, cmd: ReverseTransfer) -> dict[str, Any]:
        original = self._transfer_record(cmd.transfer)
        if original is None:
            raise TransferNotFound(f"transfer {cmd.transfer!r} does not exist")
        if original.kind == "payout":
            raise PayoutHold(f"transfer {cmd.transfer!r} paid out on chain; it cannot be reversed in the ledger")
        asset = Asset.parse(original.asset)
        amount = None if cmd.amount is None else asset.parse_amount(cmd.amount)
        existing = self._transfer_record(cmd.id)
        if existing is not None:
            if existing.reverses != cmd.transfer or (amount is not None and amount != existing.amount):
                raise IdConflict(f"transfer id {cmd.id!r} was already used with a different body")
            return self._transfer_result(self._as_created(existing), self._position_of(existing.id))
        reversed_amount = original.reverse(cmd.id, amount)
        # Money goes back the way it came: the original's credit side pays.
        debit, credit = self._side_of(original.credit_account), self._side_of(original.debit_account)
        debit.require_open()
        credit.require_open()
        reversal = Transfer(
            transfer_id=cmd.id,
            kind="reversal",
            debit_account=original.credit_account,
            credit_account=original.debit_account,
            asset=original.asset,
            amount=reversed_amount,
            metadata={},
            reverses=original.transfer_id,
        )
        debit.debit(cmd.id, reversed_amount)
        credit.credit(cmd.id, reversed_amount)
        position = self._save(*_saveable(debit, credit), original, reversal)
        return self._transfer_result(reversal, position)

    def _void_transfer(self, cmd: VoidTransfer) -> dict[str, Any]:
        transfer = self._pending_transfer(cmd.id)
        if transfer.status == VOIDED:
            return self._transfer_result(self.work.get_version(transfer.id, 2), self._position_of(transfer.id, 2))
        transfer.void(self.clock())
        return self._release(transfer, VOIDED)

    def _expire_transfer(self, transfer_id: str) -> bool:
        transfer = self._transfer_record(transfer_id)
        if transfer is None or not transfer.is_expired(self.clock()):
            return False
        transfer.expire(self.clock())
        self._release(transfer, transfer.status)
        return True

    def _release(self, transfer: Transfer, reason: str) -> dict[str, Any]:
        """Void both sides of a hold (and of its fee), in the same save as the transfer's event."""
        legs = [transfer]
        if transfer.fee:
            fee_leg = self._transfer_record(fee_transfer_id(transfer.transfer_id))
            assert fee_leg is not None
            if reason == VOIDED:
                fee_leg.void(self.clock())
            else:
                fee_leg.expire(self.clock())
            legs.insert(0, fee_leg)
        sides: dict[str, Account | SystemAccount] = {}
        for leg in legs:
            self._side(sides, leg.debit_account).void_pending_debit(leg.transfer_id, leg.pending_amount, reason)
            self._side(sides, leg.credit_account).void_pending_credit(leg.transfer_id, leg.pending_amount, reason)
        position = self._save(*_saveable(*sides.values()), *legs, timeouts_cleared=[transfer.transfer_id])
        return self._transfer_result(transfer, position)

    def _request_payout(self, cmd: RequestPayout) -> dict[str, Any]:
        account = self._account(cmd.account)
        amount = Asset.parse(account.asset).parse_amount(cmd.amount)
        existing = self._payout_record(cmd.id)
        if existing is not None:
            if not existing.same_request(cmd.account, amount, cmd.destination, cmd.memo):
                raise IdConflict(f"payout id {cmd.id!r} was already used with a different body")
            first = existing if existing.version == 1 else self.work.get_version(existing.id, 1)
            return self._payout_result(first, self._position_of(existing.id))
        if account.asset not in self.payout_assets:
            raise AssetNotOnChain(f"{account.asset} is not mapped to a Stellar asset (LEDGER_STELLAR_ASSETS)")
        account.require_open()
        sides: dict[str, Account | SystemAccount] = {cmd.account: account}
        hold = self._move(
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
        opened = self._missing_system_accounts(account.asset, clearing_account_id(account.asset))
        if opened:
            self._save(*opened)
        payout = Payout(
            payout_id=cmd.id,
            account=cmd.account,
            asset=account.asset,
            amount=amount,
            destination=cmd.destination,
            memo=cmd.memo,
            hold_id=hold.transfer_id,
        )
        return self._payout_result(payout, self._save(*_saveable(*sides.values()), hold, payout))

    def _credit_from_chain(self, payment_id: str, asset: str, amount: int, memo: str | None) -> dict[str, Any]:
        transfer_id = chain_deposit_id(payment_id)
        existing = self._transfer_record(transfer_id)
        if existing is not None:
            return self._deposit_result(self._as_created(existing), self._position_of(existing.id))
        target: Account | None = None
        if memo and CLIENT_ID.fullmatch(memo):
            try:
                target = self._account(memo)
            except AccountNotFound:
                pass
        if target is not None and (target.asset != asset or target.status != "open"):
            target = None
        opened = self._missing_system_accounts(asset, clearing_account_id(asset), suspense_account_id(asset))
        if opened:
            self._save(*opened)
        credit_id = target.account_id if target else suspense_account_id(asset)
        sides: dict[str, Account | SystemAccount] = {credit_id: target} if target else {}
        deposit = self._move(
            sides,
            transfer_id,
            "chain_deposit",
            clearing_account_id(asset),
            credit_id,
            amount,
            metadata={"stellar_payment": payment_id, "memo": memo},
            asset=asset,
        )
        return self._deposit_result(deposit, self._save(*_saveable(*sides.values()), deposit))

    def _payout(self, payout_id: str) -> Payout:
        payout = self._payout_record(payout_id)
        if payout is None:
            raise PayoutNotFound(f"payout {payout_id!r} does not exist")
        return payout

    def _resolve_payout(
        self, payout_id: str, *, confirmed: tuple[str, int] | None = None, failure: str | None = None
    ) -> dict[str, Any]:
        payout = self._payout(payout_id)
        changed = payout.confirm(*confirmed) if confirmed else payout.fail(failure or "failed")
        if not changed:
            return self._payout_result(payout, self._position_of(payout.id, payout.version))
        hold = self._transfer_record(payout.hold_id)
        assert hold is not None
        sides: dict[str, Account | SystemAccount] = {}
        debit, credit = self._side(sides, hold.debit_account), self._side(sides, hold.credit_account)
        if confirmed:
            held = hold.pending_amount
            posted = hold.post(None, self.clock())
            debit.post_pending_debit(hold.transfer_id, held, posted)
            credit.post_pending_credit(hold.transfer_id, held, posted)
        else:
            hold.void(self.clock())
            debit.void_pending_debit(hold.transfer_id, hold.pending_amount, VOIDED)
            credit.void_pending_credit(hold.transfer_id, hold.pending_amount, VOIDED)
        return self._payout_result(payout, self._save(*_saveable(*sides.values()), hold, payout))

    def _note_payout(self, payout_id: str, note: Callable[[Payout], bool]) -> dict[str, Any]:
        payout = self._payout(payout_id)
        if not note(payout):
            return self._payout_result(payout, self._position_of(payout.id, payout.version))
        return self._payout_result(payout, self._save(payout))

    @staticmethod
    def _payout_result(payout: Payout, position: Position | int) -> dict[str, Any]:
        asset = Asset.parse(payout.asset)
        return {
            "id": payout.payout_id,
            "state": payout.state,
            "account": payout.account,
            "amount": asset.format(payout.amount),
            "asset": payout.asset,
            "destination": payout.destination,
            "memo": payout.memo,
            "hold_id": payout.hold_id,
            "attempts": payout.attempts,
            "tx_hash": payout.tx_hash,
            "ledger": payout.ledger,
            "reason": payout.reason,
            "stuck": payout.stuck,
            "position": position,
        }

    def _pending_transfer(self, transfer_id: str) -> Transfer:
        transfer = self._transfer_record(transfer_id)
        if transfer is None:
            raise TransferNotFound(f"transfer {transfer_id!r} does not exist")
        if transfer.kind == "payout":
            raise PayoutHold(f"transfer {transfer_id!r} holds a payout; only its outcome on chain resolves it")
        if not transfer.pending_amount:
            raise TransferNotPending(f"transfer {transfer_id!r} was posted at once; it was never pending")
        return transfer

    # Plumbing -----------------------------------------------------------------

    def _submit(self, handler: Callable[[], T], *hints: UUID) -> T:
        """Run a command in the next group (see ``commands.group_commit``) and wait for its
        answer; ``hints`` are the aggregates it will read, fetched with its group's."""
        ticket = Ticket(handler, hints, acting_key.get() or self.actor)
        return self._groups.submit(ticket)  # type: ignore[no-any-return]

    def _run_group(self, tickets: list[Ticket]) -> None:
        """Apply the commands one after another in memory, each in a scope of its own (a
        refused one leaves nothing behind), then save the accepted ones in one
        transaction and answer each with its own result or error.

        A concurrent writer elsewhere (another process) makes the save conflict on a
        version; the whole group then runs again on fresh state. Nothing is answered
        before the save, so a crash loses only unanswered commands, and never part of one.
        """
        for attempt in range(1, self.write_attempts + 1):
            work = self._work = UnitOfWork(self.mapper, self.recorder, self._cache)  # type: ignore[attr-defined]
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
                log.debug("write conflict, running the group again", extra={"attempt": attempt})
                self._fee_rules.clear()  # it may have been a rule that changed
                time.sleep(random.uniform(0, 0.002 * attempt))
                continue
            except Exception as exc:  # noqa: BLE001  # the store is unreachable: nothing of the group was saved
                self._fee_rules.clear()
                for ticket in tickets:
                    ticket.fail(exc)
                return
            finally:
                self._work = None
            for ticket, result, error in outcomes:
                if error is not None:
                    ticket.fail(error)
                else:
                    ticket.answer(resolved(result, positions))
            return
        for ticket in tickets:
            ticket.fail(Busy(f"the write kept conflicting with concurrent writes ({self.write_attempts} attempts)"))

    def _save(self, *aggregates: Any, **side_tables: Any) -> Position:
        """Add the aggregates' new events to the group's save; the command's position
        (its last event's) is known once the group is saved."""
        return self.work.add(*aggregates, **side_tables)

    def _exists(self, originator_id: UUID) -> bool:
        return self.work.exists(originator_id)

    def _position_of(self, originator_id: UUID, version: int = 1) -> Position | int:
        """The position of one of an aggregate's events (that of the command that recorded it)."""
        return self.work.position_of(originator_id, version)

    @staticmethod
    def _opened_result(account: Account, position: Position | int) -> dict[str, Any]:
        """The answer to an open, then and on every retry: the account as it was opened."""
        asset, overdraft_limit, metadata = account.opened_with
        return _account_view(account.account_id, asset, "open", overdraft_limit, metadata, position)

    @staticmethod
    def _account_result(account: Account, position: Position | int) -> dict[str, Any]:
        return _account_view(
            account.account_id,
            account.asset,
            account.status,
            account.overdraft_limit,
            account.metadata,
            position,
            (account.daily_limit, account.monthly_limit),
        )

    @staticmethod
    def _transfer_result(transfer: Transfer, position: Position | int) -> dict[str, Any]:
        asset = Asset.parse(transfer.asset)
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
        if transfer.pending_amount:  # a two-phase transfer
            result["posted_amount"] = asset.format(transfer.amount)
            result["expires_at"] = transfer.expires_at.isoformat() if transfer.expires_at else None
        result["position"] = position
        return result

    @staticmethod
    def _fee_rule_result(rule: FeeRule, position: Position | int) -> dict[str, Any]:
        asset = Asset.parse(rule.asset)
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

    @classmethod
    def _transaction_result(
        cls, transaction_id: str, transfers: list[Transfer], position: Position | int
    ) -> dict[str, Any]:
        return {
            "id": transaction_id,
            "transfers": [
                {k: v for k, v in cls._transfer_result(t, position).items() if k != "position"} for t in transfers
            ],
            "position": position,
        }

    @staticmethod
    def _deposit_result(transfer: Transfer, position: Position | int) -> dict[str, Any]:
        asset = Asset.parse(transfer.asset)
        return {
            "id": transfer.transfer_id,
            "status": transfer.status,
            "account": transfer.credit_account,
            "amount": asset.format(transfer.amount),
            "asset": transfer.asset,
            "position": position,
        }


def _account_view(
    account_id: str,
    asset: str,
    status: str,
    overdraft_limit: int,
    metadata: dict[str, Any],
    position: Position | int,
    limits: tuple[int | None, int | None] = (None, None),
) -> dict[str, Any]:
    unit = Asset.parse(asset)
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


def _leg_hints(leg: TransferFunds) -> tuple[UUID, ...]:
    """What a transfer reads: its two accounts, and its id (a retry finds its first answer)."""
    return account_uuid(leg.debit_account), account_uuid(leg.credit_account), transfer_uuid(leg.id)


def _hold_hints(transfer_id: str) -> tuple[UUID, ...]:
    """What posting, voiding or expiring a hold reads first: the transfer and its fee leg."""
    return transfer_uuid(transfer_id), transfer_uuid(fee_transfer_id(transfer_id))


def _saveable(*sides: Account | SystemAccount) -> list[Any]:
    """Aggregates to save with their version check, or the events of system accounts."""
    items: list[Any] = []
    for side in sides:
        items.extend(side.events if isinstance(side, SystemAccount) else [side])
    return items


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
