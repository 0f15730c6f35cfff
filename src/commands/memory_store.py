"""The event store in memory, so the command handlers' unit tests need no server.

It is eventsourcing's in-memory (POPO) recorder plus what ``commands.recorder`` adds on
PostgreSQL: a group of commands written in one step (``write``), appends at the end of a
stream (version 0, for system accounts), and reads by stream and by position range. It
keeps the rules the SQL functions keep (``ledger_write``, ``ledger_append``): a stream the
group only read must still be at the version read, version N follows N - 1, a version is
used once; a broken rule is an ``IntegrityError``, and nothing of the write is kept.
The hash chain is PostgreSQL's alone (and the auditors'); it is not kept here.

Build a ledger on it with ``Books(MEMORY_STORE)`` (``commands.event_store``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, ProgrammingError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory

from ledger.accounts import APPEND_VERSION


class MemoryRecorder(POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: dict[str, datetime] = {}  # the transfer_timeouts table

    def write(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        read_versions: dict[str, int],
        timeouts_set: Sequence[tuple[str, datetime]] = (),
        timeouts_cleared: Sequence[str] = (),
    ) -> list[int]:
        with self._database_lock:
            for stream, version in read_versions.items():
                if self._last_version(stream) != version:
                    raise IntegrityError(f"stream {stream} moved while the command ran")
            new_timeouts = [transfer_id for transfer_id, _ in timeouts_set]
            if len(set(new_timeouts)) < len(new_timeouts) or not self.timeouts.keys().isdisjoint(new_timeouts):
                raise IntegrityError("a transfer's timeout is set twice")
            positions = self._insert_events(stored_events)
            self.timeouts.update(timeouts_set)
            for transfer_id in timeouts_cleared:
                self.timeouts.pop(transfer_id, None)
        self._notify_listeners()
        return list(positions or [])

    def select_beyond(self, stream_ids: Sequence[UUID], versions: Sequence[int]) -> list[StoredEvent]:
        with self._database_lock:
            return [
                e
                for stream, version in zip(stream_ids, versions, strict=True)
                for e in self.select_events(stream, gt=version)
            ]

    def select_range(self, first: int, last: int) -> list[StoredEvent]:
        with self._database_lock:
            return self._stored_events[max(first, 1) - 1 : last]

    def position_of(self, stream_id: UUID, version: int) -> int | None:
        with self._database_lock:
            index = self._stored_events_index[str(stream_id)].get(version)
        return None if index is None else index + 1

    def _last_version(self, stream: Any) -> int:
        return max(self._stored_events_index[str(stream)], default=0)

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """Every event's version must be the next of its stream (an append takes the next)."""
        next_version: dict[str, int] = {}
        for event in stored_events:
            stream = str(event.originator_id)
            expected = next_version.get(stream, self._last_version(stream) + 1)
            if event.originator_version > 0 and event.originator_version < expected:
                raise IntegrityError(f"stream {stream}: version {event.originator_version} is used")
            if event.originator_version > expected:
                raise ProgrammingError(f"stream {stream} has no version {event.originator_version - 1} to follow")
            next_version[stream] = expected + 1

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:
        numbered: list[int] = []
        for event in stored_events:
            if event.originator_version <= APPEND_VERSION:  # as ledger_append: any version below 1
                version = self._last_version(event.originator_id) + 1
                event = StoredEvent(event.originator_id, version, event.topic, event.state)
            numbered.extend(super()._update_table([event]) or [])
        return numbered


class MemoryFactory(POPOFactory):
    def application_recorder(self) -> ApplicationRecorder:
        return MemoryRecorder()
