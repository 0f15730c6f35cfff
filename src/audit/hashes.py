"""Tamper evidence: the hash chaining each stored event to its stream's previous one, and
the Merkle root over every stream's head that seals commit to.

The definitions are the contract with auditors' own tools (docs/audit.md spells them
out); the event hash is also computed by the database (``ledger_append``, migration
0006), so the two must stay byte for byte the same.
"""

from __future__ import annotations

from bisect import bisect_left
from hashlib import sha256
from struct import Struct

BUCKET_BITS = 12
BUCKETS = 1 << BUCKET_BITS
_INT8 = Struct(">q")
_EMPTY_BUCKET = sha256(b"\x00").digest()


def event_hash(
    previous: bytes, position: int, stream: bytes, version: int, write: int, topic: str, state: bytes
) -> bytes:
    """sha256(previous || int8 position || stream uuid (16 bytes) || int8 version ||
    int8 write position || utf-8 topic || 0x00 || state); ``previous`` is empty for a
    stream's first event, ``write`` is the position of the first event of its write."""
    return sha256(previous + hash_prefix(position, stream, version, write, topic.encode()) + state).digest()


def hash_prefix(position: int, stream: bytes, version: int, write: int, topic: bytes) -> bytes:
    """What an event's hash covers between the previous hash and the state."""
    return b"".join((_INT8.pack(position), stream, _INT8.pack(version), _INT8.pack(write), topic, b"\x00"))


class StreamHeads:
    """Every stream's head (version and hash) and the Merkle root over them.

    Leaves are ``uuid || int8 version || hash``, grouped in 4,096 buckets by the first
    12 bits of the uuid; a bucket's digest is sha256(0x00 || its leaves sorted by uuid),
    an inner node's is sha256(0x01 || left || right). Only buckets whose streams moved
    since the last root are hashed again, so sealing costs what changed, not what exists.
    """

    def __init__(self) -> None:
        self.heads: dict[bytes, tuple[int, bytes]] = {}
        self.dirty: dict[bytes, tuple[int, bytes]] = {}  # streams moved since the last root, and their heads
        self._buckets: list[list[bytes]] = [[] for _ in range(BUCKETS)]  # leaves, sorted
        self._levels: list[list[bytes]] = [[_EMPTY_BUCKET] * BUCKETS]
        while len(self._levels[-1]) > 1:
            below = self._levels[-1]
            self._levels.append([_node(below[i], below[i + 1]) for i in range(0, len(below), 2)])

    def __len__(self) -> int:
        return len(self.heads)

    def set(self, stream: bytes, version: int, hash_: bytes) -> None:
        self.heads[stream] = self.dirty[stream] = (version, hash_)

    def root(self) -> bytes:
        buckets, pack = self._buckets, _INT8.pack
        moved: set[int] = set()
        for stream, (version, hash_) in self.dirty.items():  # buckets stay sorted: leaves start with the uuid
            index = (stream[0] << 4) | (stream[1] >> 4)
            leaves = buckets[index]
            at = bisect_left(leaves, stream)
            if at < len(leaves) and leaves[at].startswith(stream):
                leaves[at] = stream + pack(version) + hash_
            else:
                leaves.insert(at, stream + pack(version) + hash_)
            moved.add(index)
        self.dirty.clear()
        level = self._levels[0]
        for index in moved:
            level[index] = sha256(b"\x00" + b"".join(buckets[index])).digest()
        for depth in range(1, len(self._levels)):
            below, level = self._levels[depth - 1], self._levels[depth]
            moved = {index >> 1 for index in moved}
            for index in moved:
                level[index] = _node(below[2 * index], below[2 * index + 1])
        return self._levels[-1][0]


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()
