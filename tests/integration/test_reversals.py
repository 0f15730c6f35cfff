"""Reversals: compensating transfers; the total reversed never exceeds the original.

Here, what needs PostgreSQL or HTTP: the rules over HTTP, and racing reversals. The
rules themselves run on the in-memory store in
``tests/unit/handlers/test_reversals.py``.
"""

from __future__ import annotations

import threading
from typing import Any

from auth.store import KeyStore
from commands.application import Books
from commands.event_store import event_store_env
from commands.http import create_app
from commands.messages import ReverseTransfer
from ledger.errors import LedgerError
from tests.conftest import Urls, api_client, unique
from tests.scenarios import paid


def test_reversals_over_http(books: Books, event_count: Any, keys: KeyStore, admin_token: str) -> None:
    client = api_client(create_app(books, keys=keys), admin_token)
    _, _, transfer_id = paid(books)
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


def test_racing_reversals_never_exceed_the_original(books: Books, servers: Urls) -> None:
    a, b, transfer_id = paid(books, "100.00")
    outcomes: list[str] = []

    def reverse() -> None:
        app = Books(event_store_env(servers.settings()))
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
    assert books.transfer_record(transfer_id).reversed_amount == 6000  # type: ignore[union-attr]
    assert (books.account(a).available, books.account(b).available) == (6000, 10000 - 6000)
