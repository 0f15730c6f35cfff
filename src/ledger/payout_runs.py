"""Payout runs: many payouts uploaded together, checked whole, then started, paused,
resumed, cancelled or retried as one (the Stellar Disbursement Platform's disbursement).

A run is two kinds of aggregate: the run itself (its state and totals, small whatever
its size) and its rows in chunks of ``CHUNK_ROWS`` (each chunk one event, so a run of
10,000 rows never makes one large event or Kafka message, and a chunk at a time is all
any reader holds).

Each row is paid as a payout of its own, requested by the chain worker while the run is
started; its id is derived from the run's, the row's and the attempt's (``row_payout_id``),
so requesting it again after a crash finds the first. A run is ``completed`` once every
row has ended (paid, or failed), and a retry puts its failed rows back in line under a
new attempt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.errors import RunStateConflict
from ledger.ids import NAMESPACE

CHUNK_ROWS = 250
MAX_ROWS = 10_000


class RunState(StrEnum):
    READY = "ready"
    STARTED = "started"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class RowState(StrEnum):
    READY = "ready"  # not requested yet
    PENDING = "pending"  # its payout is on its way
    SUCCESS = "success"
    FAILED = "failed"


READY, STARTED, PAUSED, COMPLETED, CANCELLED = RunState
ROW_READY, ROW_PENDING, ROW_SUCCESS, ROW_FAILED = RowState
ROW_STATES = tuple(RowState)


@dataclass(frozen=True)
class Row:
    """One payment of a run, checked: ``amount`` in the account's minor units."""

    id: str
    account: str
    asset: str
    amount: int
    destination: str
    memo: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_uuid(run_id: str) -> UUID:
    return uuid5(NAMESPACE, f"payout-run:{run_id}")


def chunk_uuid(run_id: str, index: int) -> UUID:
    return uuid5(NAMESPACE, f"payout-run:{run_id}:chunk:{index}")


def row_payout_id(run_id: str, row_id: str, attempt: int) -> str:
    """The payout paying a row in an attempt; "$" (in no client id) keeps it apart from
    every payout a client names, and lets the row be read back from it."""
    return f"{run_id}${row_id}${attempt}"


def row_of_payout(payout_id: str) -> tuple[str, str, int] | None:
    """(run id, row id, attempt) of a run's payout; None for any other payout."""
    parts = payout_id.split("$")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


class PayoutRun(Aggregate):
    class Uploaded(Aggregate.Created):
        run_id: str
        fingerprint: str
        rows: int
        chunks: int
        totals: dict[str, str]  # asset -> minor units, as a string (exact at any size)

    class Started(Aggregate.Event):
        pass

    class Paused(Aggregate.Event):
        pass

    class Resumed(Aggregate.Event):
        pass

    class Cancelled(Aggregate.Event):
        pass

    class Completed(Aggregate.Event):
        succeeded: int
        failed: int

    class Retried(Aggregate.Event):
        attempt: int

    class RowsFailed(Aggregate.Event):
        """Rows whose payout could not even be requested (funds, a frozen account, ...)."""

        attempt: int
        rows: list[dict[str, str]]  # {"row", "code", "reason"}

    @staticmethod
    def create_id(run_id: str) -> UUID:
        return run_uuid(run_id)

    @event(Uploaded)
    def __init__(self, run_id: str, fingerprint: str, rows: int, chunks: int, totals: dict[str, str]) -> None:
        self.run_id = run_id
        self.fingerprint = fingerprint
        self.rows = rows
        self.chunks = chunks
        self.totals = totals
        self.state = READY
        self.attempt = 1
        self.refused: dict[str, int] = {}  # row -> the attempt whose payout could not be requested
        self.failed = 0  # rows failed when the run last completed

    def start(self) -> bool:
        return self._move((READY,), STARTED, self._started)

    def pause(self) -> bool:
        return self._move((STARTED,), PAUSED, self._paused)

    def resume(self) -> bool:
        return self._move((PAUSED,), STARTED, self._resumed)

    def cancel(self) -> bool:
        return self._move((READY, PAUSED), CANCELLED, self._cancelled)

    def _move(self, sources: tuple[str, ...], target: str, record: Any) -> bool:
        """Change state; False (nothing recorded) when already there, so a retried
        request is answered as the first was."""
        if self.state == target:
            return False
        if self.state not in sources:
            raise RunStateConflict(f"payout run {self.run_id!r} is {self.state}; it cannot be {target} now")
        record()
        return True

    def retry(self) -> None:
        """Failed rows back in line, under the next attempt: the completed run starts again.
        Only a completed run retries, so every row of the last attempt has ended and the
        rows to pay again are exactly those that failed in it."""
        if self.state != COMPLETED:
            raise RunStateConflict(f"payout run {self.run_id!r} is {self.state}; only a completed run retries rows")
        if not self.failed:
            raise RunStateConflict(f"payout run {self.run_id!r} has no failed rows to retry")
        self._retried(attempt=self.attempt + 1)

    def complete(self, succeeded: int, failed: int) -> bool:
        if self.state != STARTED:
            return False
        self._completed(succeeded=succeeded, failed=failed)
        return True

    def fail_rows(self, rows: list[dict[str, str]]) -> bool:
        """Record rows whose payout could not be requested in this attempt (once each)."""
        new = [row for row in rows if self.refused.get(row["row"]) != self.attempt]
        if not new:
            return False
        self._rows_failed(attempt=self.attempt, rows=new)
        return True

    @event(Started)
    def _started(self) -> None:
        self.state = STARTED

    @event(Paused)
    def _paused(self) -> None:
        self.state = PAUSED

    @event(Resumed)
    def _resumed(self) -> None:
        self.state = STARTED

    @event(Cancelled)
    def _cancelled(self) -> None:
        self.state = CANCELLED

    @event(Completed)
    def _completed(self, succeeded: int, failed: int) -> None:
        self.state = COMPLETED
        self.failed = failed

    @event(Retried)
    def _retried(self, attempt: int) -> None:
        self.attempt = attempt
        if self.state == COMPLETED:
            self.state = STARTED

    @event(RowsFailed)
    def _rows_failed(self, attempt: int, rows: list[dict[str, str]]) -> None:
        # A new dict, never a change in place: the write path forks aggregates shallowly.
        self.refused = {**self.refused, **{row["row"]: attempt for row in rows}}


class RowChunk(Aggregate):
    """Up to ``CHUNK_ROWS`` rows of a run, as uploaded (never changed)."""

    class Created(Aggregate.Created):
        run_id: str
        index: int
        rows: list[dict[str, Any]]

    @staticmethod
    def create_id(run_id: str, index: int) -> UUID:
        return chunk_uuid(run_id, index)

    @event(Created)
    def __init__(self, run_id: str, index: int, rows: list[dict[str, Any]]) -> None:
        self.run_id = run_id
        self.index = index
        self.rows = rows

    def parsed(self) -> list[Row]:
        return [Row(**row) for row in self.rows]
