"""What the replay's two checks share: findings, the seals seen, and where a replay stops."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson


@dataclass(frozen=True)
class Finding:
    kind: str
    position: int | None
    subject: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "position": self.position, "subject": self.subject, "detail": self.detail}


@dataclass
class SealSeen:
    number: int
    position: int
    through_position: int
    root: str


# A finding before its stream is named: (kind, position, stream, detail).
RawFinding = tuple[str, int | None, bytes, str]


class Fold:
    """What both checks share: where the replay stops, at the end of a write."""

    def __init__(self, to_position: int | None, to_time: datetime | None) -> None:
        self.to_position, self.to_time = to_position, to_time
        self.raw: list[RawFinding] = []
        self.stopped = False
        self._write: int | None = None

    def run(self, pages: Iterable[list[Any]], progress: Any = None) -> None:
        for page in pages:
            self.fold(page)
            if progress is not None:
                progress.update(len(page))
            if self.stopped:
                break
        self.finish()

    def fold(self, rows: list[Any]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last row."""

    def _past_the_end(self, position: int, state: bytes) -> bool:
        """At the first event of a write: is it past where the replay stops?"""
        past = (self.to_position is not None and position > self.to_position) or (
            self.to_time is not None and _event_time(state) > self.to_time
        )
        self.stopped = past
        return past


def _event_time(state: bytes) -> datetime:
    try:
        moment = datetime.fromisoformat(orjson.loads(state)["timestamp"]["_data_"])
    except Exception:  # noqa: BLE001 - unreadable (and named as such by the checks): not a reason to stop
        return _NO_TIME
    return moment if moment.tzinfo is not None else _NO_TIME


_NO_TIME = datetime.min.replace(tzinfo=UTC)
