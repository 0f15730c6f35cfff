"""A small pure-Python ledger: the reference the real one is compared with.

It knows nothing of events, aggregates or storage; it states the rules directly, in
the order the real command handlers check them, and answers either the expected
result or the expected error code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class RefAccount:
    limit: int = 0
    opened_limit: int = 0
    status: str = "open"
    system: bool = False
    posted_debits: int = 0
    posted_credits: int = 0
    pending_debits: int = 0
    pending_credits: int = 0
    daily_limit: int | None = None
    monthly_limit: int | None = None
    spent_by_day: dict[str, int] = field(default_factory=dict)
    spent_by_month: dict[str, int] = field(default_factory=dict)

    def copy(self) -> RefAccount:
        return RefAccount(
            **{**vars(self), "spent_by_day": dict(self.spent_by_day), "spent_by_month": dict(self.spent_by_month)}
        )

    @property
    def available(self) -> int:
        return self.posted_credits - self.posted_debits - self.pending_debits

    def balances(self) -> tuple[int, int, int, int]:
        return (self.posted_debits, self.posted_credits, self.pending_debits, self.pending_credits)


@dataclass
class RefTransfer:
    kind: str
    debit: str
    credit: str
    amount: int
    pending: bool
    timeout: int | None
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "posted"
    posted_amount: int = 0
    expires_at: datetime | None = None
    resolutions: int = 0
    reverses: str | None = None
    reversed_amount: int = 0
    fee: int = 0  # the fee leg's amount when created (its own transfer is f"{id}$fee")
    fee_payer: str | None = None
    fee_terms: tuple[int, int, int, int | None, str] | None = None
    posted_fee: int = 0

    @property
    def net(self) -> int:
        """What the transfer's own leg moves (the amount, less a fee the recipient pays)."""
        return self.amount - self.fee if self.fee_payer == "recipient" else self.amount


class ReferenceLedger:
    def __init__(self, issuance: str, fees: str) -> None:
        self.issuance = issuance
        self.fees = fees
        self.fee_terms: tuple[int, int, int, int | None, str] | None = None  # bps, fixed, min, max, payer
        self.accounts: dict[str, RefAccount] = {issuance: RefAccount(system=True), fees: RefAccount(system=True)}
        self.transfers: dict[str, RefTransfer] = {}
        self.transactions: dict[str, list[tuple[Any, ...]]] = {}

    # Fees -------------------------------------------------------------------------

    def set_fee_rule(self, terms: tuple[int, int, int, int | None, str] | None) -> None:
        self.fee_terms = terms

    @staticmethod
    def fee_of(terms: tuple[int, int, int, int | None, str] | None, amount: int) -> int:
        if terms is None:
            return 0
        bps, fixed, minimum, maximum, _ = terms
        fee = max(fixed + (amount * bps + 5000) // 10000, minimum)
        return fee if maximum is None else min(fee, maximum)

    # Accounts ---------------------------------------------------------------

    def open(self, account: str, limit: int) -> None:
        existing = self.accounts.get(account)
        if existing is not None:
            if existing.opened_limit != limit:
                raise Refused("id_conflict")
            return
        self.accounts[account] = RefAccount(limit=limit, opened_limit=limit)

    def change_limit(self, account: str, limit: int) -> None:
        a = self.accounts[account]
        if a.status == "closed":
            raise Refused("account_not_open")
        if limit == a.limit:
            return
        if a.available < -limit:
            raise Refused("overdraft_in_use")
        a.limit = limit

    def change_limits(self, account: str, daily: int | None, monthly: int | None) -> None:
        a = self.accounts[account]
        if a.status == "closed":
            raise Refused("account_not_open")
        a.daily_limit, a.monthly_limit = daily, monthly

    def freeze(self, account: str) -> None:
        a = self.accounts[account]
        if a.status == "closed":
            raise Refused("account_not_open")
        a.status = "frozen"

    def unfreeze(self, account: str) -> None:
        a = self.accounts[account]
        if a.status == "closed":
            raise Refused("account_not_open")
        a.status = "open"

    def close(self, account: str) -> None:
        a = self.accounts[account]
        if a.status == "closed":
            return
        if a.posted_credits != a.posted_debits or a.pending_debits or a.pending_credits:
            raise Refused("account_not_empty")
        a.status = "closed"

    # Movements ----------------------------------------------------------------

    def deposit(self, transfer_id: str, account: str, amount: int) -> None:
        existing = self.transfers.get(transfer_id)
        if existing is not None:
            same = (existing.kind, existing.debit, existing.credit, existing.amount, existing.pending) == (
                "deposit",
                self.issuance,
                account,
                amount,
                False,
            )
            if not same:
                raise Refused("id_conflict")
            return
        if self.accounts[account].status != "open":
            raise Refused("account_not_open")
        self.accounts[account].posted_credits += amount
        self.accounts[self.issuance].posted_debits += amount
        self.transfers[transfer_id] = RefTransfer(
            "deposit", self.issuance, account, amount, False, None, posted_amount=amount
        )

    def transfer(
        self, transfer_id: str, debit: str, credit: str, amount: int, pending: bool, timeout: int | None, now: datetime
    ) -> None:
        existing = self.transfers.get(transfer_id)
        if existing is not None:
            if debit == credit:
                raise Refused("same_account")
            same = (existing.kind, existing.debit, existing.credit, existing.amount, existing.pending) == (
                "transfer",
                debit,
                credit,
                amount,
                pending,
            ) and existing.timeout == timeout
            if not same:
                raise Refused("id_conflict")
            return
        accounts = {k: v.copy() for k, v in self.accounts.items()}
        transfers: dict[str, RefTransfer] = {}
        self._charged(transfer_id, debit, credit, amount, pending, timeout, now, accounts, transfers)
        self.accounts = accounts
        self.transfers.update(transfers)

    def _charged(
        self,
        transfer_id: str,
        debit: str,
        credit: str,
        amount: int,
        pending: bool,
        timeout: int | None,
        now: datetime,
        accounts: dict[str, RefAccount],
        transfers: dict[str, RefTransfer],
    ) -> None:
        """A transfer and the fee the current rule charges on it, into ``accounts``/``transfers``."""
        if debit == credit:
            raise Refused("same_account")
        terms = self.fee_terms
        fee = self.fee_of(terms, amount)
        payer = terms[4] if terms and fee else None
        net = amount - fee if payer == "recipient" else amount
        if net <= 0:
            raise Refused("fee_exceeds_amount")
        self._check_leg(debit, credit, net, accounts, now)
        self._apply_leg(transfer_id, debit, credit, net, pending, timeout, now, accounts, transfers)
        if fee:
            main = transfers[transfer_id]
            main.amount, main.fee, main.fee_payer, main.fee_terms = amount, fee, payer, terms
            self._spend(accounts[debit], fee, now)
            self._apply_leg(f"{transfer_id}$fee", debit, self.fees, fee, pending, timeout, now, accounts, transfers)
            transfers[f"{transfer_id}$fee"].kind = "fee"

    def transaction(self, transaction_id: str, legs: list[tuple[Any, ...]], now: datetime) -> None:
        """legs: (transfer_id, debit, credit, amount, pending)."""
        if transaction_id in self.transactions:
            if self.transactions[transaction_id] != legs:
                raise Refused("id_conflict")
            return
        accounts = {k: v.copy() for k, v in self.accounts.items()}
        transfers: dict[str, RefTransfer] = {}
        for transfer_id, debit, credit, amount, pending in legs:
            if transfer_id in self.transfers or transfer_id in transfers:
                raise Refused("id_conflict")
            self._charged(transfer_id, debit, credit, amount, pending, None, now, accounts, transfers)
        self.accounts = accounts
        self.transfers.update(transfers)
        self.transactions[transaction_id] = legs

    def _check_leg(self, debit: str, credit: str, amount: int, accounts: dict[str, RefAccount], now: datetime) -> None:
        """Refuse the leg, or count its debit toward the debit account's limits."""
        if debit == credit:
            raise Refused("same_account")
        if accounts[debit].status != "open" or accounts[credit].status != "open":
            raise Refused("account_not_open")
        self._spend(accounts[debit], amount, now)

    @staticmethod
    def _spend(account: RefAccount, amount: int, now: datetime) -> None:
        """A payment out of a client account: funds first, then the UTC day's and month's limits."""
        if account.system:
            return
        if account.available - amount < -account.limit:
            raise Refused("insufficient_funds")
        day, month = now.date().isoformat(), now.strftime("%Y-%m")
        if account.daily_limit is not None and account.spent_by_day.get(day, 0) + amount > account.daily_limit:
            raise Refused("limit_exceeded")
        if account.monthly_limit is not None and account.spent_by_month.get(month, 0) + amount > account.monthly_limit:
            raise Refused("limit_exceeded")
        account.spent_by_day[day] = account.spent_by_day.get(day, 0) + amount
        account.spent_by_month[month] = account.spent_by_month.get(month, 0) + amount

    @staticmethod
    def _apply_leg(
        transfer_id: str,
        debit: str,
        credit: str,
        amount: int,
        pending: bool,
        timeout: int | None,
        now: datetime,
        accounts: dict[str, RefAccount],
        transfers: dict[str, RefTransfer],
    ) -> None:
        if pending:
            accounts[debit].pending_debits += amount
            accounts[credit].pending_credits += amount
        else:
            accounts[debit].posted_debits += amount
            accounts[credit].posted_credits += amount
        transfers[transfer_id] = RefTransfer(
            "transfer",
            debit,
            credit,
            amount,
            pending,
            timeout,
            status="pending" if pending else "posted",
            posted_amount=0 if pending else amount,
            expires_at=now + timedelta(seconds=timeout) if timeout else None,
        )

    def reverse(self, reversal_id: str, original_id: str, amount: int | None) -> None:
        original = self.transfers.get(original_id)
        if original is None:
            raise Refused("transfer_not_found")
        existing = self.transfers.get(reversal_id)
        if existing is not None:
            if existing.reverses != original_id or (amount is not None and amount != existing.amount):
                raise Refused("id_conflict")
            return
        if original.status != "posted":
            raise Refused("transfer_not_posted")
        remaining = original.posted_amount - original.reversed_amount
        amount = remaining if amount is None else amount
        if amount == 0 or amount > remaining:
            raise Refused("exceeds_reversible")
        debit, credit = self.accounts[original.credit], self.accounts[original.debit]
        if debit.status != "open" or credit.status != "open":
            raise Refused("account_not_open")
        if not debit.system and debit.available - amount < -debit.limit:
            raise Refused("insufficient_funds")
        debit.posted_debits += amount
        credit.posted_credits += amount
        original.reversed_amount += amount
        self.transfers[reversal_id] = RefTransfer(
            "reversal", original.credit, original.debit, amount, False, None, posted_amount=amount, reverses=original_id
        )

    # Resolving pending transfers -----------------------------------------------

    def _hold(self, transfer_id: str, now: datetime, action: str) -> RefTransfer | None:
        t = self.transfers.get(transfer_id)
        if t is None:
            raise Refused("transfer_not_found")
        if not t.pending:
            raise Refused("transfer_not_pending")
        return t

    def post(self, transfer_id: str, gross: int | None, now: datetime) -> None:
        t = self._hold(transfer_id, now, "post")
        assert t is not None
        if t.status == "posted":
            posted_gross = t.posted_amount + (t.posted_fee if t.fee_payer == "recipient" else 0)
            if gross not in (None, posted_gross):
                raise Refused("transfer_not_pending")
            return
        if t.status == "expired" or (t.status == "pending" and t.expires_at is not None and now >= t.expires_at):
            raise Refused("transfer_expired")
        if t.status != "pending":
            raise Refused("transfer_not_pending")
        if gross is None:
            net, fee = t.net, t.fee
        else:
            fee = self.fee_of(t.fee_terms, gross) if t.fee else 0
            net = gross - fee if t.fee_payer == "recipient" else gross
            if net < 0:
                raise Refused("fee_exceeds_amount")
        if net > t.net:
            raise Refused("exceeds_pending")
        if self.accounts[t.debit].status != "open" or self.accounts[t.credit].status != "open":
            raise Refused("account_not_open")
        legs = [(t, t.net, net)]
        if t.fee:
            legs.append((self.transfers[f"{transfer_id}$fee"], t.fee, fee))
        for leg, held, posted in legs:
            self.accounts[leg.debit].pending_debits -= held
            self.accounts[leg.debit].posted_debits += posted
            self.accounts[leg.credit].pending_credits -= held
            self.accounts[leg.credit].posted_credits += posted
            leg.status, leg.posted_amount = "posted", posted
            leg.resolutions += 1
        t.posted_fee = fee

    def void(self, transfer_id: str, now: datetime) -> None:
        t = self._hold(transfer_id, now, "void")
        assert t is not None
        if t.status == "voided":
            return
        if t.status == "expired" or (t.status == "pending" and t.expires_at is not None and now >= t.expires_at):
            raise Refused("transfer_expired")
        if t.status != "pending":
            raise Refused("transfer_not_pending")
        self._release(t, "voided")

    def expire_due(self, now: datetime) -> set[str]:
        due = {
            tid
            for tid, t in self.transfers.items()
            if t.kind != "fee" and t.status == "pending" and t.expires_at and now >= t.expires_at
        }
        for transfer_id in due:
            self._release(self.transfers[transfer_id], "expired")
        return due

    def _release(self, t: RefTransfer, status: str) -> None:
        legs = [(t, t.net)]
        if t.fee:
            legs.append((self.transfers[f"{self._id_of(t)}$fee"], t.fee))
        for leg, held in legs:
            self.accounts[leg.debit].pending_debits -= held
            self.accounts[leg.credit].pending_credits -= held
            leg.status = status
            leg.resolutions += 1

    def _id_of(self, transfer: RefTransfer) -> str:
        return next(tid for tid, t in self.transfers.items() if t is transfer)


def major(minor: int) -> str:
    return str(Decimal(minor) / 100)
