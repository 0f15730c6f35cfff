"""What a command does to whose accounts: what a key limited to some accounts is checked against.

A limited key may debit (at once or pending), reverse from and pay out from only the
accounts it covers, and credit others unless its owner restricted that too. Commands
that name a transfer by id act on that transfer's accounts, so those are looked up.
"""

from __future__ import annotations

from typing import Any

from commands.application import Books
from commands.messages import (
    Deposit,
    ExecuteTransaction,
    OpenAccount,
    PayoutRunAction,
    PostTransfer,
    RemoveMonitor,
    RequestPayout,
    ReverseTransfer,
    SetMonitor,
    TransferBatch,
    TransferFunds,
    UploadPayoutRun,
    VoidTransfer,
)

Sides = tuple[tuple[str, ...], tuple[str, ...]]  # (accounts it must cover, accounts it credits)


def sides(command: Any, books: Books) -> Sides:
    """The accounts a command acts on, as (must be covered, credited); ((), ()) for a
    command naming a transfer that does not exist (the handler answers 404)."""
    if isinstance(command, OpenAccount):
        return (command.id,), ()
    if isinstance(command, SetMonitor | RemoveMonitor):
        return (command.account,), ()
    if isinstance(command, Deposit | RequestPayout):
        return (command.account,), ()
    if isinstance(command, TransferFunds):
        return (command.debit_account,), (command.credit_account,)
    if isinstance(command, ExecuteTransaction | TransferBatch):
        legs = command.transfers
        return tuple(leg.debit_account for leg in legs), tuple(leg.credit_account for leg in legs)
    if isinstance(command, PostTransfer | VoidTransfer):
        pending = books.transfer_record(command.id)
        return ((pending.debit_account,), ()) if pending else ((), ())
    if isinstance(command, ReverseTransfer):
        original = books.transfer_record(command.transfer)
        # A reversal pays back: it debits the original's credit side.
        return ((original.credit_account,), (original.debit_account,)) if original else ((), ())
    if isinstance(command, UploadPayoutRun):
        return tuple(dict.fromkeys(row.account for row in command.rows)), ()
    if isinstance(command, PayoutRunAction):
        return run_accounts(command.run, books), ()
    raise TypeError(f"{type(command).__name__} is not limited by accounts (it needs the admin scope)")


def run_accounts(run_id: str, books: Books) -> tuple[str, ...]:
    """The accounts a payout run pays from (read chunk by chunk); none for no such run."""
    run = books.run_record(run_id)
    accounts: dict[str, None] = {}
    for index in range(run.chunks if run else 0):
        chunk = books.run_chunk(run_id, index)
        accounts.update(dict.fromkeys(row["account"] for row in chunk.rows) if chunk else {})
    return tuple(accounts)


def admin_reason(command: Any) -> str | None:
    """Why a command that its route's scope would allow still needs an admin key, if it does."""
    if isinstance(command, OpenAccount) and command.overdraft_limit:
        return "opening an account with an overdraft limit lends it money"
    return None
