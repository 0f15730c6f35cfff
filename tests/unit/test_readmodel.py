"""The query side's rendering of read-model documents, without MongoDB."""

from __future__ import annotations

from typing import Any

import pytest

from queries.readmodel import transfer_view


def transfer_doc(**fields: Any) -> dict[str, Any]:
    """A transfer document as the projector writes it (``projectors.views``): pending,
    10.00 from alice to bob, 4.00 of it posted so far."""
    return {
        "_id": "t1",
        "kind": "transfer",
        "status": "pending",
        "pending": True,
        "debit_account": "alice",
        "credit_account": "bob",
        "asset": "USD/2",
        "amount": "1000",
        "posted_amount": "400",
        "expires_at": "2026-01-01T00:01:00Z",
        "transaction": None,
        "reverses": None,
        "reversed_amount": "0",
        "fee": "0",
        "fee_payer": None,
        "fee_for": None,
        "metadata": "{}",
        "time": "2026-01-01T00:00:00Z",
        "position": 7,
        **fields,
    }


def older(doc: dict[str, Any]) -> dict[str, Any]:
    """The same document as projected before ``pending`` was renamed from ``two_phase``."""
    renamed = {key: value for key, value in doc.items() if key != "pending"}
    return {**renamed, "two_phase": doc["pending"]}


def test_a_pending_transfer_shows_what_is_posted_and_when_it_expires() -> None:
    view = transfer_view(transfer_doc())
    assert (view["posted_amount"], view["expires_at"]) == ("4.00", "2026-01-01T00:01:00Z")


@pytest.mark.parametrize("pending", [True, False])
def test_a_document_projected_before_the_rename_reads_as_it_did(pending: bool) -> None:
    doc = transfer_doc(pending=pending)
    assert "two_phase" in older(doc) and "pending" not in older(doc)
    assert transfer_view(older(doc)) == transfer_view(doc)
    assert ("posted_amount" in transfer_view(older(doc))) is pending


def test_a_transfer_posted_at_once_has_no_pending_fields() -> None:
    view = transfer_view(transfer_doc(status="posted", pending=False, posted_amount="1000", expires_at=None))
    assert "posted_amount" not in view and "expires_at" not in view
