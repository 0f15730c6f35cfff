"""The unit of work of a group of commands: what they read, what they change, one save.

The commands of a group run one after another against the same in-memory state, so each
sees what the ones before it did, exactly as if each had been sent alone after the
other. Each command works in a scope of its own, on copies of the aggregates it touches:
a refused command is dropped with its scope and leaves nothing behind for its
neighbours. What the accepted commands wrote is saved in one transaction.

Reads cost one query for the whole group (``prefetch``): aggregates the writer already
holds are brought up to date with the events stored since (usually none), the others
are loaded, and ids nobody used yet come back absent, which is how idempotency is
checked for every command at once. The save's version checks (the event store's
primary key) still guard against any writer this process does not know of.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, StoredEvent


class Position:
    """A command's position in the store: the notification id of the last of the given
    events, known once the group they belong to is saved."""

    __slots__ = ("last",)

    def __init__(self, last: int) -> None:
        self.last = last  # the event's index in the group's save

    def __repr__(self) -> str:
        return f"Position(event {self.last} of the group)"


def resolved(answer: Any, positions: Sequence[int]) -> Any:
    """The answer with every ``Position`` replaced by its notification id, given the
    positions the group's save returned (one per event, in order)."""
    if isinstance(answer, Position):
        return positions[answer.last]
    if isinstance(answer, dict):
        items = {key: resolved(value, positions) for key, value in answer.items()}
        # A subclass says what kind of answer it is (``answers.Replayed``): keep it.
        return items if type(answer) is dict else type(answer)(items)
    if isinstance(answer, list):
        return [resolved(item, positions) for item in answer]
    return answer


class AggregateCache:
    """The aggregates as the store last had them, for the one writer thread of a process
    (least recently used ones forgotten first). Entries may be behind the store when
    another process wrote since; reads bring them up to date."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[UUID, Aggregate] = OrderedDict()

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        aggregate = self._items.get(aggregate_id)
        if aggregate is not None:
            self._items.move_to_end(aggregate_id)
        return aggregate

    def put(self, aggregate: Aggregate) -> None:
        self._items[aggregate.id] = aggregate
        self._items.move_to_end(aggregate.id)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


@dataclass
class _Scope:
    """What one command (or one part of it) changed, until it is accepted or dropped."""

    base: int  # how many events the scopes below hold: this scope's first event's index
    saved: dict[UUID, Aggregate] = field(default_factory=dict)
    read: dict[UUID, Aggregate | None] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    indexes: dict[tuple[UUID, int], int] = field(default_factory=dict)  # (stream, version) -> event index
    timeouts_set: list[tuple[str, datetime]] = field(default_factory=list)
    timeouts_cleared: list[str] = field(default_factory=list)
    expected_versions: dict[str, int] = field(default_factory=dict)

    def merge(self, upper: _Scope) -> None:
        self.saved.update(upper.saved)
        for aggregate_id in upper.saved:
            self.read.pop(aggregate_id, None)
        self.events.extend(upper.events)
        self.indexes.update(upper.indexes)
        self.timeouts_set.extend(upper.timeouts_set)
        self.timeouts_cleared.extend(upper.timeouts_cleared)
        for stream, version in upper.expected_versions.items():
            self.expected_versions.setdefault(stream, version)


class GroupRecorder(Protocol):
    """What a group's unit of work needs of the event store: eventsourcing's reads, plus a
    group written in one step. ``commands.recorder.LedgerRecorder`` is it on PostgreSQL,
    ``commands.memory_store.MemoryRecorder`` in memory (the handlers' unit tests)."""

    def select_events(self, originator_id: Any, *, lte: int | None = None) -> Sequence[StoredEvent]: ...

    def select_beyond(self, stream_ids: Sequence[UUID], versions: Sequence[int]) -> list[StoredEvent]: ...

    def select_range(self, first: int, last: int) -> list[StoredEvent]: ...

    def position_of(self, stream_id: UUID, version: int) -> int | None: ...

    def write(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        read_versions: dict[str, int],
        timeouts_set: Sequence[tuple[str, datetime]] = (),
        timeouts_cleared: Sequence[str] = (),
    ) -> list[int]: ...


class UnitOfWork:
    def __init__(self, mapper: Mapper[UUID], recorder: GroupRecorder, cache: AggregateCache) -> None:
        self._mapper = mapper
        self._recorder = recorder
        self._cache = cache
        self._known: dict[UUID, Aggregate | None] = {}  # read from the store this group (None: no such stream)
        self._scopes: list[_Scope] = [_Scope(base=0)]
        self.actor: str | None = None

    # Scopes -----------------------------------------------------------------------

    def begin(self, actor: str | None) -> None:
        """A command starts; its events are stamped with who asked for it."""
        self.actor = actor
        self._scopes.append(_Scope(base=len(self._scopes[-1].events) + self._scopes[-1].base))

    def accept(self) -> None:
        upper = self._scopes.pop()
        self._scopes[-1].merge(upper)

    def reject(self) -> None:
        self._scopes.pop()

    @contextmanager
    def scope(self) -> Iterator[None]:
        """A part of a command that stands or falls alone (one transfer of a batch)."""
        self._scopes.append(_Scope(base=len(self._scopes[-1].events) + self._scopes[-1].base))
        try:
            yield
        except BaseException:
            self.reject()
            raise
        self.accept()

    # Reads ------------------------------------------------------------------------

    def prefetch(self, aggregate_ids: Iterable[UUID]) -> None:
        """Read the given aggregates for the whole group in one query."""
        self._load([i for i in dict.fromkeys(aggregate_ids) if i not in self._known])

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate as the commands before this one left it (a copy this command may
        change), or None if it does not exist."""
        top = self._scopes[-1]
        if aggregate_id in top.saved:
            return top.saved[aggregate_id]
        if aggregate_id in top.read:
            return top.read[aggregate_id]
        current = self._current(aggregate_id)
        fork = None if current is None else _fork(current)
        top.read[aggregate_id] = fork
        return fork

    def get_version(self, aggregate_id: UUID, version: int) -> Aggregate | None:
        """The aggregate as it was at ``version`` (to answer a retry as the first time)."""
        pending = [
            event
            for scope in self._scopes
            for event in scope.events
            if event.originator_id == aggregate_id and 0 < event.originator_version <= version
        ]
        stored = (
            map(self._mapper.to_domain_event, self._recorder.select_events(aggregate_id, lte=version))
            if not pending or pending[0].originator_version > 1
            else []
        )
        aggregate: Any = None
        for event in [*stored, *pending]:
            aggregate = event.mutate(aggregate)
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether a stream exists, without reading it (an issuance account's is long)."""
        if any(aggregate_id in scope.saved for scope in self._scopes) or self._known.get(aggregate_id) is not None:
            return True
        return self.stored_position(aggregate_id, 1) is not None

    def position_of(self, aggregate_id: UUID, version: int = 1) -> Position | int:
        """The position of one of an aggregate's events: in this group, or in the store."""
        for scope in reversed(self._scopes):
            index = scope.indexes.get((aggregate_id, version))
            if index is not None:
                return Position(index)
        position = self.stored_position(aggregate_id, version)
        if position is None:
            raise LookupError(f"aggregate {aggregate_id} has no event at version {version}")
        return position

    def recorded_balances(
        self, position: Position | int, transfer_ids: Collection[str], accounts: Collection[UUID], lookback: int
    ) -> dict[UUID, dict[str, int]]:
        """The balances that the movements of ``accounts`` for ``transfer_ids`` recorded
        (``balance_after``), the latest per account, among the ``lookback`` events up to
        ``position``: the command that made them ends there (its events are saved
        together, in order), in this group or in the store."""
        if isinstance(position, Position):
            group = [event for scope in self._scopes for event in scope.events]
            events: Iterable[Any] = group[max(position.last - lookback, 0) : position.last + 1]
        else:
            events = map(self._mapper.to_domain_event, self._recorder.select_range(position - lookback, position))
        found: dict[UUID, dict[str, int]] = {}
        for event in events:
            after = getattr(event, "balance_after", None)
            if after is not None and event.originator_id in accounts and event.transfer_id in transfer_ids:
                found[event.originator_id] = after
        return found

    def stored_position(self, aggregate_id: UUID, version: int) -> int | None:
        return self._recorder.position_of(aggregate_id, version)

    # Writes -----------------------------------------------------------------------

    def add(
        self,
        *objs: Any,
        timeouts_set: Sequence[tuple[str, datetime]] = (),
        timeouts_cleared: Sequence[str] = (),
        expected_versions: dict[str, int] | None = None,
    ) -> Position:
        """Add the pending events of aggregates (or bare events) to the save, in order;
        the command's position is that of the last of them."""
        top = self._scopes[-1]
        before = len(top.events)
        for obj in objs:
            if isinstance(obj, Aggregate):
                events: Sequence[Any] = obj.collect_events()
                top.saved[obj.id] = obj
                top.read.pop(obj.id, None)
            else:
                events = [obj]
            for event in events:
                if self.actor is not None and "key_id" not in vars(event):
                    object.__setattr__(event, "key_id", self.actor)
                if event.originator_version > 0:
                    top.indexes[(event.originator_id, event.originator_version)] = top.base + len(top.events)
                top.events.append(event)
        top.timeouts_set.extend(timeouts_set)
        top.timeouts_cleared.extend(timeouts_cleared)
        for stream, version in (expected_versions or {}).items():
            top.expected_versions.setdefault(stream, version)
        if len(top.events) == before:
            raise ValueError("nothing to save")
        return Position(top.base + len(top.events) - 1)

    def commit(self) -> list[int]:
        """Save what the accepted commands wrote in one transaction, and give every
        position its value. Nothing to save: no transaction at all."""
        if len(self._scopes) != 1:
            raise RuntimeError("a command's scope is still open")
        group = self._scopes[0]
        if not group.events:
            return []
        written = {str(event.originator_id) for event in group.events}
        positions = self._recorder.write(
            [self._mapper.to_stored_event(event) for event in group.events],
            # A stream this group writes is checked by its own insert's version.
            read_versions={s: v for s, v in group.expected_versions.items() if s not in written},
            timeouts_set=group.timeouts_set,
            timeouts_cleared=group.timeouts_cleared,
        )
        for aggregate in group.saved.values():
            self._cache.put(aggregate)
        return list(positions)

    # Plumbing ---------------------------------------------------------------------

    def _current(self, aggregate_id: UUID) -> Aggregate | None:
        for scope in reversed(self._scopes):
            if aggregate_id in scope.saved:
                return scope.saved[aggregate_id]
            if aggregate_id in scope.read and scope is not self._scopes[-1]:
                return scope.read[aggregate_id]
        if aggregate_id not in self._known:
            self._load([aggregate_id])
        return self._known[aggregate_id]

    def _load(self, aggregate_ids: list[UUID]) -> None:
        """One query: the events each aggregate has beyond what the cache holds of it."""
        if not aggregate_ids:
            return
        cached = {i: self._cache.get(i) for i in aggregate_ids}
        versions = [0 if a is None else a.version for a in cached.values()]
        rows = self._recorder.select_beyond(aggregate_ids, versions)
        for row in rows:
            cached[row.originator_id] = self._mapper.to_domain_event(row).mutate(cached[row.originator_id])
        for aggregate_id, aggregate in cached.items():
            self._known[aggregate_id] = aggregate
            if aggregate is not None:
                self._cache.put(aggregate)


def _fork(aggregate: Aggregate) -> Aggregate:
    """A copy a command may change without touching the original: aggregates hold only
    values that events replace (numbers, strings, tuples, dicts never changed in place)."""
    fork = copy.copy(aggregate)
    fork._pending_events = []  # type: ignore[attr-defined]  # the library's own list, per copy
    return fork
