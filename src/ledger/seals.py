"""Seals: the event that commits, at a point of the event stream, to every stream's head.

A seal is what makes cutting off the end of a stream, or rewriting a stream with
consistent hashes, visible: its Merkle root (``audit.hashes.StreamHeads``) covers the
head of every stream written before it, and seals travel on Kafka like any event, so
copies of them live outside the database. All seals form one stream of their own,
chained like every other.
"""

from __future__ import annotations

from uuid import uuid5

from eventsourcing.domain import Aggregate

from ledger.ids import NAMESPACE

SEAL_STREAM = uuid5(NAMESPACE, "seals")
SEAL_SUBJECT = "seals"


class Seal(Aggregate):
    class Recorded(Aggregate.Event):
        through_position: int  # the last event the root covers
        streams: int
        root: str  # hex

    @staticmethod
    def event(version: int, through_position: int, streams: int, root: str) -> Seal.Recorded:
        return Seal.Recorded(  # type: ignore[call-arg]  # fields come from the dataclass transform
            originator_id=SEAL_STREAM,
            originator_version=version,
            timestamp=Seal.Event.create_timestamp(),
            through_position=through_position,
            streams=streams,
            root=root,
        )
