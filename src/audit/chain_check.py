"""The hash-chain check: every stream's chain of hashes, the versions' sequence, and
every seal's Merkle root over the streams' heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256

import orjson

from audit.folds import Fold, RawFinding, SealSeen
from audit.hashes import StreamHeads
from audit.rows import ChainRow
from ledger.seals import SEAL_STREAM

_SEALS = SEAL_STREAM.bytes
_NO_HEAD = (0, b"")


class ChainCheck(Fold):
    """The hash chain of every stream, the versions' sequence, and every seal's root."""

    def __init__(self, to_position: int | None = None, to_time: datetime | None = None) -> None:
        super().__init__(to_position, to_time)
        self.heads = StreamHeads()
        self.seals: list[SealSeen] = []
        self.last_position = 0
        self.after_seal = 0  # events after the last seal: covered by the hash chains alone
        self._gaps: dict[tuple[bytes, int, int], int] = {}  # (stream, first, last missing version) -> finding

    def fold(self, rows: list[ChainRow]) -> None:
        heads, dirty, heads_get = self.heads.heads, self.heads.dirty, self.heads.heads.get
        current, last, after_seal = self._write, self.last_position, self.after_seal
        for position, stream, version, state, stored, write, prefix in rows:
            if write != current:
                if self._past_the_end(position, state):
                    break
                current = self._write = write
            if position <= last:
                self.raw.append(("out_of_order", position, stream, f"position {position} comes after {last}"))
            previous_version, previous = heads_get(stream, _NO_HEAD)
            if stream == _SEALS:
                self.last_position = last
                self._check_seal(position, version, state)
                after_seal = -1
            if version == previous_version + 1:
                try:
                    fits = sha256(b"".join((previous, prefix, state))).digest() == stored
                except TypeError:  # a column set to NULL
                    fits = False
                if not fits:
                    self.raw.append(
                        (
                            "hash_mismatch",
                            position,
                            stream,
                            f"version {version} does not match its hash: edited, moved or written outside the ledger",
                        )
                    )
                heads[stream] = dirty[stream] = (version, stored)
            else:
                self._out_of_sequence(position, stream, version, previous_version)
                if version > previous_version:
                    heads[stream] = dirty[stream] = (version, stored)  # it chains from a version not seen
            last = position
            after_seal += 1
        self.last_position, self.after_seal = last, after_seal

    def _out_of_sequence(self, position: int, stream: bytes, version: int, previous: int) -> None:
        """A gap in a stream's versions (events deleted), or a version arriving after a later
        one (events reordered): in that case the gap it leaves behind is its own doing."""
        if version > previous:
            kind = "seal_missing" if stream == _SEALS else "events_missing"
            detail = f"versions {previous + 1} to {version - 1} are missing before this one (deleted)"
            self._gaps[(stream, previous + 1, version - 1)] = len(self.raw)
            self.raw.append((kind, position, stream, detail))
            return
        detail = f"version {version} comes after version {previous} (reordered or duplicated)"
        for (gap_stream, low, high), index in list(self._gaps.items()):
            if gap_stream == stream and low <= version <= high:
                _, moved_past, _, _ = self.raw[index]
                detail = f"version {version} is stored after version {high + 1} (position {moved_past}): reordered"
                if low == high:
                    del self._gaps[(gap_stream, low, high)]
                    self.raw[index] = ("", None, stream, "")  # not deleted after all
        self.raw.append(("out_of_order", position, stream, detail))

    def _check_seal(self, position: int, number: int, state: bytes) -> None:
        root = self.heads.root().hex()
        try:
            data = orjson.loads(state)
            sealed, through, streams = str(data["root"]), data["through_position"], data["streams"]
        except Exception as exc:  # noqa: BLE001 - whatever is there, it is not a seal the sealer wrote
            self.raw.append(("seal_mismatch", position, _SEALS, f"is not a seal: {exc!r}"))
            return
        self.seals.append(SealSeen(number, position, through, sealed))
        if (sealed, through, streams) != (root, self.last_position, len(self.heads)):
            detail = (
                f"covers {streams} streams through position {through} with root {sealed[:16]}…; the replay has "
                f"{len(self.heads)} streams through {self.last_position} with root {root[:16]}…: "
                "history before it was changed"
            )
            self.raw.append(("seal_mismatch", position, _SEALS, detail))

    def summary(self) -> ChainSummary:
        return ChainSummary([f for f in self.raw if f[0]], self.seals, len(self.heads), self.after_seal)


@dataclass
class ChainSummary:
    """What the chain check found; small enough to hand from a child process."""

    raw: list[RawFinding]
    seals: list[SealSeen]
    streams: int
    after_seal: int
