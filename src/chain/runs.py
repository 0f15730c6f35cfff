"""Payout runs, driven by the chain worker: a started run's rows requested as payouts a
chunk at a time, and the run completed once every one of them has ended.

The worker learns of runs from Kafka (any run event names its run: a hint to look), and
reads what it acts on from the event store: a run's state and attempt, its rows. Its
own table (``chain_runs``) keeps how far it got, so a restarted worker goes on from
there; requesting a chunk again finds the payouts already requested (their ids are
derived from the run, the row and the attempt).

The run's state is mirrored into ``chain_runs`` at each step, and the worker's channels
bind no payout of a run paused there (``ChainStore.bind_next``); the mirror may lag, so
a channel also reads the run from the event store before a payout's first envelope, and
puts a paused run's payout back (marking the run paused in the mirror at once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from chain.connections import ThreadConnections
from commands.application import Books
from ledger.errors import LedgerError
from ledger.payout_runs import CANCELLED, COMPLETED, STARTED, PayoutRun, Row, row_of_payout, row_payout_id
from ledger.payouts import FAILED

log = logging.getLogger(__name__)


class RunStore(ThreadConnections):
    """``chain_runs``, and what ``chain_payouts`` says of a run's payouts."""

    def open_runs(self) -> list[dict[str, Any]]:
        return self.conn().execute("SELECT * FROM chain_runs WHERE NOT ended ORDER BY updated_at").fetchall()

    def note(self, run_id: str, **changes: Any) -> None:
        columns = ", ".join(f"{name} = %({name})s" for name in changes)
        self.conn().execute(
            f"UPDATE chain_runs SET {columns}, updated_at = now() WHERE run_id = %(run_id)s",
            {**changes, "run_id": run_id},
        )

    def outcomes(self, run_id: str, attempt: int) -> dict[str, int]:
        """How many of an attempt's payouts the worker has taken in, and how they stand."""
        pattern = f"{_like(run_id)}$%${attempt}"
        row = (
            self.conn()
            .execute(
                "SELECT count(*) AS taken_in, count(*) FILTER (WHERE state = 'confirmed') AS confirmed, "
                "count(*) FILTER (WHERE state IN ('failed', 'refused')) AS failed, "
                "count(*) FILTER (WHERE state NOT IN ('confirmed', 'failed', 'refused')) AS open "
                "FROM chain_payouts WHERE payout_id LIKE %s",
                (pattern,),
            )
            .fetchone()
        )
        return {k: int(v) for k, v in (row or {}).items()}


def _like(text: str) -> str:
    """``text`` as a literal in a LIKE pattern (run ids may hold ``_``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class RunDriver:
    """One step at a time over the runs not ended: a chunk of payouts requested, or a
    run completed; the thread waits only when no run had anything to do."""

    def __init__(self, store: RunStore, books: Books, passed: Callable[[str], None] = lambda step: None) -> None:
        self.store = store
        self.books = books
        self.passed = passed  # the crash tests' kill switch (chain.kill_switch.KillSwitch.passed)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.step():
                    stop.wait(0.5)
            except Exception:  # the store or the ledger unreachable, or a bug: logged, and tried again
                log.exception("payout run step failed; retrying")
                stop.wait(1.0)

    def step(self) -> bool:
        """Advance every open run by at most one chunk; True if any did something."""
        busy = False
        for known in self.store.open_runs():
            busy = self._advance(known) or busy
        return busy

    def _advance(self, known: dict[str, Any]) -> bool:
        run_id = known["run_id"]
        run = self.books.run_record(run_id)
        if run is None:  # a hint that named no run
            self.store.note(run_id, state="unknown", ended=True)
            return False
        if run.state != known["state"]:
            self.store.note(run_id, state=run.state)
        if run.state in (CANCELLED, COMPLETED):
            self.store.note(run_id, ended=True)
            return False
        if run.state != STARTED:
            return False
        if known["attempt"] != run.attempt:
            self.store.note(run_id, attempt=run.attempt, next_chunk=0, requested=0)
            known = {**known, "attempt": run.attempt, "next_chunk": 0, "requested": 0}
        if known["next_chunk"] < run.chunks:
            return self._request_chunk(run, known["next_chunk"], known["requested"])
        return self._complete_if_ended(run, known["requested"])

    def _request_chunk(self, run: PayoutRun, index: int, requested: int) -> bool:
        chunk = self.books.run_chunk(run.run_id, index)
        if chunk is None:
            raise LedgerError(f"payout run {run.run_id!r} has no chunk {index}")
        rows = [row for row in chunk.parsed() if self._due(run, row)]
        if rows:
            result = self.books.request_run_rows(run.run_id, run.attempt, rows)
            if result.get("not_started"):
                return False  # paused, cancelled or retried meanwhile: read again next step
            requested += result["requested"]
            self.passed("requested")  # requested, not yet noted: a restart requests them again
        self.store.note(run.run_id, next_chunk=index + 1, requested=requested)
        log.info("payout run rows requested", extra={"run": run.run_id, "chunk": index, "rows": len(rows)})
        return True

    def _due(self, run: PayoutRun, row: Row) -> bool:
        """Whether a row is paid in the run's attempt: every row in the first; in a retry,
        the rows that failed in the attempt before (refused, or their payout failed)."""
        if run.attempt == 1:
            return True
        before = run.attempt - 1
        if run.refused.get(row.id) == before:
            return True
        payout = self.books.payout_record(row_payout_id(run.run_id, row.id, before))
        return payout is not None and payout.state == FAILED

    def _complete_if_ended(self, run: PayoutRun, requested: int) -> bool:
        outcomes = self.store.outcomes(run.run_id, run.attempt)
        if outcomes["taken_in"] < requested or outcomes["open"]:
            return False
        refused = sum(1 for attempt in run.refused.values() if attempt == run.attempt)
        failed = outcomes["failed"] + refused
        if not self.books.complete_payout_run(run.run_id, run.rows - failed, failed):
            return False  # paused (or cancelled) just now: read again next step
        log.info("payout run completed", extra={"run": run.run_id, "failed": failed})
        self.store.note(run.run_id, state=COMPLETED, ended=True)
        return True


def run_hold(books: Books, payout_id: str) -> str | None:
    """Why a run's payout must not be submitted now: its run is ``paused`` or
    ``cancelled`` in the event store; None for a payout outside runs, or a started run's."""
    names = row_of_payout(payout_id)
    if names is None:
        return None
    run = books.run_record(names[0])
    if run is None or run.state in (STARTED, COMPLETED):
        return None
    return run.state
