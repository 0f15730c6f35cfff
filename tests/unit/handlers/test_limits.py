"""Daily and monthly outgoing limits, enforced atomically with the transfer; windows in
UTC.

On the in-memory event store (``commands.memory_store``); what needs PostgreSQL or HTTP
(the rules over HTTP) is in ``tests/integration/test_limits.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commands.application import Books
from commands.messages import ChangePolicy, ReverseTransfer, TransferFunds
from ledger.errors import LimitExceeded
from tests.conftest import Clock, unique
from tests.scenarios import limited


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 1, 31, 23, 0, tzinfo=UTC))


def send(books: Books, a: str, b: str, amount: str, **extra: Any) -> dict[str, Any]:
    return books.transfer(TransferFunds(unique("t"), a, b, amount, **extra))


def test_the_daily_limit_resets_at_midnight_utc(books: Books, clock: Clock, event_count: Any) -> None:
    a, b = limited(books, "100.00", None)
    send(books, a, b, "60.00")
    send(books, a, b, "40.00", pending=True)  # pending transfers count when made
    before = event_count()
    with pytest.raises(LimitExceeded, match="sent 100.00 of its daily limit of 100.00"):
        send(books, a, b, "0.01")
    assert event_count() == before
    clock.now += timedelta(hours=1)  # 2026-02-01T00:00Z
    send(books, a, b, "100.00")


def test_the_monthly_limit_spans_days_and_resets_with_the_month(books: Books, clock: Clock) -> None:
    clock.now = datetime(2026, 3, 30, 12, tzinfo=UTC)
    a, b = limited(books, None, "150.00")
    send(books, a, b, "100.00")
    clock.now += timedelta(days=1)  # 31 March
    with pytest.raises(LimitExceeded, match="monthly"):
        send(books, a, b, "50.01")
    send(books, a, b, "50.00")
    clock.now += timedelta(days=1)  # 1 April
    send(books, a, b, "150.00")


def test_reversals_do_not_count_and_limits_can_be_lifted(books: Books) -> None:
    a, b = limited(books, "10.00", None)
    first = send(books, a, b, "10.00")
    books.reverse_transfer(ReverseTransfer(unique("r"), first["id"]))  # b's debit is not b's spending
    with pytest.raises(LimitExceeded):
        send(books, a, b, "0.01")
    result = books.change_policy(ChangePolicy(a, {"daily_limit": None}))
    assert result["daily_limit"] is None
    send(books, a, b, "500.00")


def test_a_writer_whose_clock_lags_cannot_reset_the_window(books: Books, clock: Clock) -> None:
    clock.now = datetime(2026, 5, 2, 0, 0, 1, tzinfo=UTC)
    a, b = limited(books, "100.00", None)
    send(books, a, b, "100.00")
    clock.now -= timedelta(seconds=2)  # another process, a second behind: still 1 May there
    with pytest.raises(LimitExceeded):
        send(books, a, b, "100.00")
