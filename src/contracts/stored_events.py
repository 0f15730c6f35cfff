"""Stored events (the event store's notifications) as the messages of the event contract.

The relay publishes them, the auditors' export writes them and a rebuild replays them:
all three must say exactly the same thing for the same event, so they share this.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from contracts.events import Message, SubjectRef, creation_ref, to_message


class StoredEventEncoder:
    """Stored events (notifications) to messages; remembers each stream's public id."""

    def __init__(self, books: Application) -> None:
        self.books = books
        self._refs: dict[UUID, SubjectRef] = {}

    def encode(self, notification: Any) -> Message:
        event = self.books.mapper.to_domain_event(notification)
        if notification.originator_version == 1:
            return to_message(event, notification.id)
        return to_message(event, notification.id, self._ref(event.originator_id))

    def _ref(self, originator_id: UUID) -> SubjectRef:
        """A stream's public id and asset, from its first event (cached)."""
        ref = self._refs.get(originator_id)
        if ref is None:
            ref = creation_ref(next(iter(self.books.events.get(originator_id, lte=1))))
            if len(self._refs) > 100_000:
                self._refs.clear()
            self._refs[originator_id] = ref
        return ref
