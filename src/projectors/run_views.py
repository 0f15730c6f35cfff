"""The read models of payout runs: one document per run (versioned by its stream, like
accounts and transfers) and one per row, whose state follows its payouts.

A row document's ``attempt`` says which attempt its state belongs to: an update applies
only to the same attempt or a later one, and a payout's request never overwrites the
outcome of its own attempt, so a redelivered event cannot turn a row back.
"""

from __future__ import annotations

from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection

from contracts.events import (
    PAYOUT_CONFIRMED,
    PAYOUT_FAILED,
    PAYOUT_REQUESTED,
    PAYOUT_RUN_COMPLETED,
    PAYOUT_RUN_MOVES,
    PAYOUT_RUN_RETRIED,
    PAYOUT_RUN_ROWS_FAILED,
    PAYOUT_RUN_UPLOADED,
    LedgerEvent,
)
from ledger.payout_runs import CHUNK_ROWS, ROW_FAILED, ROW_PENDING, ROW_READY, ROW_SUCCESS, RunState, row_of_payout

RUN_STATES = {ce_type: state for ce_type, state in PAYOUT_RUN_MOVES.values()}
RUN_TYPES = {PAYOUT_RUN_UPLOADED, PAYOUT_RUN_COMPLETED, PAYOUT_RUN_RETRIED, PAYOUT_RUN_ROWS_FAILED, *RUN_STATES}


def row_key(run_id: str, row_id: str) -> str:
    return f"{run_id}${row_id}"


def run_doc(event: LedgerEvent) -> dict[str, Any]:
    data = event.data
    return {
        "_id": data["run"],
        "state": RunState.READY,
        "rows": data["rows"],
        "chunks": data["chunks"],
        "totals": data["totals"],
        "attempt": 1,
        "succeeded": None,
        "failed": None,
        "version": event.sequence,
        "position": event.position,
        "created_at": event.time,
        "updated_at": event.time,
    }


def run_changed(doc: dict[str, Any], event: LedgerEvent) -> None:
    data = event.data
    if event.type in RUN_STATES:
        doc["state"] = RUN_STATES[event.type]
    elif event.type == PAYOUT_RUN_COMPLETED:
        doc.update(state=RunState.COMPLETED, succeeded=data["succeeded"], failed=data["failed"])
    elif event.type == PAYOUT_RUN_RETRIED:
        doc.update(state=RunState.STARTED, attempt=data["attempt"])


class RowWriter:
    """A batch's changes to rows, applied in order at the end of the batch.

    Kafka orders events per subject only, so a row's payout may be read before the chunk
    that adds the row: a change to a row not there yet leaves a stub with its state, and
    the chunk then adds the row's fields to it without touching its state."""

    def __init__(self) -> None:
        self.added: list[UpdateOne] = []
        self.changes: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # key, guard, fields

    def add_rows(self, event: LedgerEvent) -> None:
        """A chunk's rows, each numbered by its place in the file (from 1)."""
        run_id = event.data["run"]
        first = event.data["chunk"] * CHUNK_ROWS + 1
        for offset, row in enumerate(event.data["rows"]):
            fields = {
                "run": run_id,
                "row": row["id"],
                "n": first + offset,
                "account": row["account"],
                "asset": row["asset"],
                "amount": row["amount"],
                "destination": row["destination"],
                "memo": row["memo"],
            }
            fresh = {"state": ROW_READY, "attempt": 0, "payout": None, "reason": None, "updated_at": event.time}
            self.added.append(
                UpdateOne({"_id": row_key(run_id, row["id"])}, {"$set": fields, "$setOnInsert": fresh}, upsert=True)
            )

    def change(self, event: LedgerEvent) -> None:
        """What a payout event (of a run's payout) or a run's refused rows do to rows."""
        if event.type == PAYOUT_RUN_ROWS_FAILED:
            run_id, attempt = event.data["run"], event.data["attempt"]
            for row in event.data["rows"]:
                self._change(run_id, row["row"], attempt, ROW_FAILED, None, row["reason"], event.time)
            return
        names = row_of_payout(event.data["payout"]) if event.type.startswith("ledger.payout.") else None
        if names is None:
            return
        run_id, row_id, attempt = names
        payout = event.data["payout"]
        if event.type == PAYOUT_REQUESTED:
            self._change(run_id, row_id, attempt, ROW_PENDING, payout, None, event.time, before=True)
        elif event.type == PAYOUT_CONFIRMED:
            self._change(run_id, row_id, attempt, ROW_SUCCESS, payout, None, event.time)
        elif event.type == PAYOUT_FAILED:
            self._change(run_id, row_id, attempt, ROW_FAILED, payout, event.data["reason"], event.time)

    def _change(
        self,
        run_id: str,
        row_id: str,
        attempt: int,
        state: str,
        payout: str | None,
        reason: str | None,
        time: str,
        *,
        before: bool = False,
    ) -> None:
        """``before``: only a row still at an earlier attempt (a request never overwrites
        its own attempt's outcome)."""
        guard = {"$lt": attempt} if before else {"$lte": attempt}
        fields: dict[str, Any] = {"state": state, "attempt": attempt, "reason": reason, "updated_at": time}
        if payout is not None:
            fields["payout"] = payout
        self.changes.append((row_key(run_id, row_id), {"attempt": guard}, {"run": run_id, "row": row_id, **fields}))

    def write(self, rows: Collection[Any]) -> None:
        if self.added:
            rows.bulk_write(self.added, ordered=False)
        for key, guard, fields in self.changes:
            if rows.update_one({"_id": key, **guard}, {"$set": fields}).matched_count:
                continue
            if rows.find_one({"_id": key}, {"_id": 1}) is None:  # its chunk has not been read yet
                rows.insert_one({"_id": key, "payout": None, **fields})
