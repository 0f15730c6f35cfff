"""The unit tier needs no server: the command handlers run on the in-memory event store
(``commands.memory_store``), a fresh one per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from commands.application import Books
from commands.event_store import MEMORY_STORE
from tests.conftest import Clock


@pytest.fixture
def clock() -> Clock:
    """The ledger's clock; a module overrides it to start at a moment of its own."""
    return Clock()


@pytest.fixture
def books(clock: Clock) -> Iterator[Books]:
    app = Books(MEMORY_STORE, clock=clock)
    yield app
    app.close()


@pytest.fixture
def event_count(books: Books) -> Callable[[], int]:
    """How many events the store holds, to prove nothing was written."""
    return books.head_position
