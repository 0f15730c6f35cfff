"""The command API's writes as data: for each kind of command, its path, the key scope it
needs, how its body reads, the ``Books`` method that runs it and what it answers.
``commands.http`` mounts them and builds the OpenAPI document from the same table, so
a route and its published contract cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auth import keys as scopes
from commands import request_bodies, requests, responses


@dataclass(frozen=True)
class Write:
    """One kind of command over HTTP: where it is sent, what key it needs, how its body
    reads, which ``Books`` method runs it and what it answers (for the OpenAPI document)."""

    path: str
    summary: str
    scope: str
    parse: Callable[..., Any]
    handler: str
    body: Any
    answer: Any
    status: int = 201
    body_required: bool = True
    example: dict[str, Any] | None = None

    @property
    def action(self) -> bool:
        """A POST to a sub-resource of an account or transfer: ``/v1/.../{id}/name``."""
        return "{" in self.path


R = responses
WRITES = (
    Write(
        "/v1/accounts",
        "Open an account",
        scopes.ACCOUNTS,
        requests.open_account,
        "open_account",
        request_bodies.OpenAccountBody,
        R.AccountAnswer,
    ),
    Write(
        "/v1/deposits",
        "Deposit: money in, from the asset's issuance account",
        scopes.DEPOSITS,
        requests.deposit,
        "deposit",
        request_bodies.DepositBody,
        R.DepositAnswer,
    ),
    Write(
        "/v1/transfers",
        "Transfer between two accounts of one asset (pending: posted or voided later)",
        scopes.TRANSFERS,
        requests.transfer,
        "transfer",
        request_bodies.TransferBody,
        R.TransferAnswer,
        example={"id": "t-1001", "debit_account": "alice", "credit_account": "bob", "amount": "12.34"},
    ),
    Write(
        "/v1/transactions",
        "Up to 100 transfers that all happen or none does",
        scopes.TRANSFERS,
        requests.transaction,
        "transaction",
        request_bodies.TransactionBody,
        R.TransactionAnswer,
    ),
    Write(
        "/v1/monitors",
        "Watch an account's balance: each crossing of the threshold is a ledger.monitor.triggered.v1 message",
        scopes.ACCOUNTS,
        requests.set_monitor,
        "set_monitor",
        request_bodies.MonitorBody,
        R.MonitorAnswer,
        status=200,
        example={"id": "low-float", "account": "treasury", "when": "below", "amount": "500.00"},
    ),
    Write(
        "/v1/monitors/{monitor_id}/remove",
        "Stop watching: the account's monitor is removed",
        scopes.ACCOUNTS,
        requests.remove_monitor,
        "remove_monitor",
        request_bodies.RemoveMonitorBody,
        R.MonitorAnswer,
        status=200,
    ),
    Write(
        "/v1/payouts",
        "Pay out to a Stellar account: holds the amount until the chain settles it",
        scopes.PAYOUTS,
        requests.payout,
        "request_payout",
        request_bodies.PayoutBody,
        R.PayoutAnswer,
    ),
    Write(
        "/v1/fee-rules",
        "Set the fee rule of an asset and operation",
        scopes.ADMIN,
        requests.fee_rule,
        "set_fee_rule",
        request_bodies.FeeRuleBody,
        R.FeeRuleAnswer,
        status=200,
    ),
    Write(
        "/v1/transfers/{transfer_id}/post",
        "Post a pending transfer, all of it or less",
        scopes.TRANSFERS,
        requests.post_transfer,
        "post_transfer",
        request_bodies.PostBody,
        R.TransferAnswer,
        status=200,
        body_required=False,
    ),
    Write(
        "/v1/transfers/{transfer_id}/void",
        "Void a pending transfer: its amount is released",
        scopes.TRANSFERS,
        requests.void_transfer,
        "void_transfer",
        request_bodies.EmptyBody,
        R.TransferAnswer,
        status=200,
        body_required=False,
    ),
    Write(
        "/v1/transfers/{transfer_id}/reverse",
        "Reverse a posted transfer, all that is left or part of it, as a new transfer",
        scopes.TRANSFERS,
        requests.reverse_transfer,
        "reverse_transfer",
        request_bodies.ReverseBody,
        R.TransferAnswer,
    ),
    Write(
        "/v1/accounts/{account_id}/policy",
        "Change an account's overdraft, daily or monthly limit",
        scopes.ADMIN,
        requests.change_policy,
        "change_policy",
        request_bodies.PolicyBody,
        R.AccountAnswer,
        status=200,
    ),
    *(
        Write(
            f"/v1/payout-runs/{{run_id}}/{name}",
            summary,
            scopes.PAYOUTS,
            requests.payout_run_action(name),
            "payout_run_action",
            request_bodies.EmptyBody,
            R.PayoutRunAnswer,
            status=200,
            body_required=False,
        )
        for name, summary in (
            ("start", "Start a ready payout run: each row's amount is held as a payout, and paid"),
            ("pause", "Pause a started run: nothing new is submitted to the chain"),
            ("resume", "Resume a paused run"),
            ("cancel", "Cancel a ready or paused run: rows not yet submitted are never paid"),
            ("retry", "Pay a completed run's failed rows again"),
        )
    ),
    Write(
        "/v1/payouts/{payout_id}/cancel",
        "Cancel a payout (one reported stuck): the chain worker fails it once the chain shows it unpaid",
        scopes.ADMIN,
        requests.cancel_payout,
        "cancel_payout",
        request_bodies.CancelPayoutBody,
        R.PayoutAnswer,
        status=202,
        body_required=False,
    ),
    Write(
        "/v1/suspense-reassignments",
        "Credit a chain deposit held in suspense (its memo named no open account) to an account",
        scopes.ADMIN,
        requests.reassign_suspense,
        "reassign_suspense",
        request_bodies.ReassignBody,
        R.TransferAnswer,
        example={"deposit": "$stellar.4294971393", "account": "acct-alice"},
    ),
    Write(
        "/v1/fee-sweeps",
        "Move what an asset's fee account collected (all of it, or an amount) to an account",
        scopes.ADMIN,
        requests.sweep_fees,
        "sweep_fees",
        request_bodies.SweepBody,
        R.TransferAnswer,
        example={"id": "sweep-2026-11", "asset": "USD/2", "account": "treasury"},
    ),
    *(
        Write(
            f"/v1/accounts/{{account_id}}/{name}",
            f"{name.capitalize()} an account",
            scopes.ADMIN,
            requests.account_action(name),
            "account_action",
            request_bodies.EmptyBody,
            R.AccountAnswer,
            status=200,
            body_required=False,
        )
        for name in ("freeze", "unfreeze", "close")
    ),
)
