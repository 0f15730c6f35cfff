"""Reversals: compensating transfers; the total reversed never exceeds the original."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from auth.store import KeyStore
from commands.application import Ledger, event_store_env
from commands.http import create_app
from commands.messages import Deposit, OpenAccount, ReverseTransfer, TransferFunds
from ledger.errors import ExceedsReversible, IdConflict, InsufficientFunds, LedgerError, TransferNotPosted
from ledger.ids import issuance_account_id
from tests.conftest import Urls, api_client, unique


def paid(ledger: Ledger, amount: str = "30.00") -> tuple[str, str, str]:
    a, b = unique("A"), unique("B")
    ledger.open_account(OpenAccount(a, "USD/2"))
    ledger.open_account(OpenAccount(b, "USD/2"))
    ledger.deposit(Deposit(unique("d"), a, "100.00"))
    transfer_id = unique("t")
    ledger.transfer(TransferFunds(transfer_id, a, b, amount))
    return a, b, transfer_id


def test_a_partial_then_a_full_reversal_never_exceed_the_original(ledger: Ledger, event_count: Any) -> None:
    a, b, transfer_id = paid(ledger)
    first = ledger.reverse_transfer(ReverseTransfer(unique("r"), transfer_id, "10.00"))
    assert (first["debit_account"], first["credit_account"], first["reverses"]) == (b, a, transfer_id)
    rest = ledger.reverse_transfer(ReverseTransfer(unique("r"), transfer_id))
    assert rest["amount"] == "20.00"
    assert (ledger.account(a).available, ledger.account(b).available) == (10000, 0)
    assert ledger.transfer_record(transfer_id).reversed_amount == 3000  # type: ignore[union-attr]
    before = event_count()
    with pytest.raises(ExceedsReversible, match="0.00 left"):
        ledger.reverse_transfer(ReverseTransfer(unique("r"), transfer_id, "0.01"))
    assert event_count() == before


def test_a_reversal_is_idempotent_on_its_own_id(ledger: Ledger, event_count: Any) -> None:
    _, _, transfer_id = paid(ledger)
    command = ReverseTransfer(unique("r"), transfer_id, "5.00")
    first = ledger.reverse_transfer(command)
    before = event_count()
    assert ledger.reverse_transfer(command) == first
    with pytest.raises(IdConflict):
        ledger.reverse_transfer(ReverseTransfer(command.id, transfer_id, "6.00"))
    assert event_count() == before


def test_a_recipient_that_spent_the_money_cannot_be_reversed_below_its_limit(ledger: Ledger) -> None:
    a, b, transfer_id = paid(ledger)
    ledger.transfer(TransferFunds(unique("t"), b, a, "25.00"))
    with pytest.raises(InsufficientFunds):
        ledger.reverse_transfer(ReverseTransfer(unique("r"), transfer_id))
    ledger.reverse_transfer(ReverseTransfer(unique("r"), transfer_id, "5.00"))


def test_pending_transfers_do_not_reverse_and_deposits_go_back_to_issuance(ledger: Ledger) -> None:
    a, b = unique("A"), unique("B")
    ledger.open_account(OpenAccount(a, "EUR/2"))
    ledger.open_account(OpenAccount(b, "EUR/2"))
    deposit_id = unique("d")
    ledger.deposit(Deposit(deposit_id, a, "50.00"))
    held = unique("h")
    ledger.transfer(TransferFunds(held, a, b, "1.00", pending=True))
    with pytest.raises(TransferNotPosted):
        ledger.reverse_transfer(ReverseTransfer(unique("r"), held))
    issuance_before = ledger.account(issuance_account_id("EUR/2")).posted_credits
    ledger.reverse_transfer(ReverseTransfer(unique("r"), deposit_id, "49.00"))
    assert ledger.account(a).available == 0
    assert ledger.account(issuance_account_id("EUR/2")).posted_credits == issuance_before + 4900


def test_reversals_over_http(ledger: Ledger, event_count: Any, keys: KeyStore, admin_token: str) -> None:
    client = api_client(create_app(ledger, keys=keys), admin_token)
    _, _, transfer_id = paid(ledger)
    created = client.simulate_post(f"/v1/transfers/{transfer_id}/reverse", json={"id": unique("r"), "amount": "1.00"})
    assert (created.status_code, created.json["reverses"]) == (201, transfer_id)
    before = event_count()
    for path, body, status, code in [
        (f"/v1/transfers/{transfer_id}/reverse", {}, 400, "invalid_request"),
        (f"/v1/transfers/{transfer_id}/reverse", {"id": unique("r"), "amount": "0"}, 400, "invalid_amount"),
        (f"/v1/transfers/{transfer_id}/reverse", {"id": unique("r"), "amount": "29.01"}, 422, "exceeds_reversible"),
        ("/v1/transfers/ghost/reverse", {"id": unique("r")}, 404, "transfer_not_found"),
    ]:
        result = client.simulate_post(path, json=body)
        assert (result.status_code, result.json["code"]) == (status, code), result.json
    assert event_count() == before


def test_racing_reversals_never_exceed_the_original(ledger: Ledger, servers: Urls) -> None:
    a, b, transfer_id = paid(ledger, "100.00")
    outcomes: list[str] = []

    def reverse() -> None:
        app = Ledger(event_store_env(servers.settings()))
        try:
            app.reverse_transfer(ReverseTransfer(unique("r"), transfer_id, "60.00"))
            outcomes.append("ok")
        except LedgerError as error:
            outcomes.append(error.code)
        finally:
            app.close()

    threads = [threading.Thread(target=reverse) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 1
    assert ledger.transfer_record(transfer_id).reversed_amount == 6000  # type: ignore[union-attr]
    assert (ledger.account(a).available, ledger.account(b).available) == (6000, 10000 - 6000)
