"""How the read-model writer reads, remembers and writes back one batch's documents of a
versioned collection (one per event stream), apart from what each event changes in them."""

from __future__ import annotations

import logging
from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from contracts.events import LedgerEvent

log = logging.getLogger(__name__)

# How many documents per collection the writer remembers between batches.
CACHE_LIMIT = 20_000


class VersionedDocs:
    """One batch's documents of a versioned collection (one document per event stream).

    Those in ``cache`` (as the writer last wrote them) are copied from it; only the
    others are read, in one query."""

    def __init__(self, collection: Collection[Any], ids: dict[str, bool], cache: dict[str, dict[str, Any]]) -> None:
        """``ids``: each document the batch needs, and whether it is assumed new (not read)."""
        self.collection = collection
        self.cache = cache
        # Shallow copies: applying an event replaces a document's fields, never changes one in place.
        known = [dict(cache[key]) for key in ids if key in cache]
        unknown = sorted(key for key, new in ids.items() if key not in cache and not new)
        stored = known + (list(collection.find({"_id": {"$in": unknown}})) if unknown else [])
        self.assumed_new = {key for key, new in ids.items() if new and key not in cache}
        self.docs: dict[str, dict[str, Any]] = {doc["_id"]: doc for doc in stored}
        self.read_versions = {doc["_id"]: doc["version"] for doc in stored}

    def create(self, event: LedgerEvent, doc: dict[str, Any]) -> None:
        self.docs.setdefault(doc["_id"], doc)

    def next_version(self, event: LedgerEvent, key: str) -> dict[str, Any] | None:
        """The document to apply ``event`` to, or None if it must not be applied now.

        An event already applied is a redelivery. An event ahead of the document means
        earlier ones are missing: the relay publishes a failed batch again, so they will
        come (before the checkpoint that covers them); applying this one now would skip
        them, and failing would stop the projector on this message for good. It is logged
        and skipped, and comes again with the republished batch.
        """
        doc = self.docs.get(key)
        if doc is None or doc["version"] < event.sequence - 1:
            have = None if doc is None else doc["version"]
            log.error(
                "event ahead of the read model; skipped until the missing ones arrive",
                extra={"collection": self.collection.name, "key": key, "have": have, "got": event.sequence},
            )
            return None
        if doc["version"] >= event.sequence:
            return None
        doc.update(version=event.sequence, position=event.position, updated_at=event.time)
        return doc

    def write(self) -> None:
        created = [doc for key, doc in self.docs.items() if key not in self.read_versions]
        there = insert_new(self.collection, created)
        if any(doc["_id"] in self.assumed_new for doc in there):
            raise NotNew(self.collection.name)
        updates = [
            UpdateOne(
                {"_id": key, "version": version}, {"$set": {k: v for k, v in self.docs[key].items() if k != "_id"}}
            )
            for key, version in self.read_versions.items()
            if self.docs[key]["version"] != version
        ]
        if updates:
            result = self.collection.bulk_write(updates, ordered=False)
            if result.matched_count != len(updates):
                raise RuntimeError(f"{self.collection.name} changed under the projector; is a second one running?")

    def remember(self) -> None:
        """After ``write``: the documents as they now are in the store."""
        if len(self.cache) + len(self.docs) > CACHE_LIMIT:
            self.cache.clear()
        self.cache.update(self.docs)


def insert_new(collection: Collection[Any], docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert, treating documents that are already there (same key) as done; returns those."""
    if not docs:
        return []
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != 11000 for error in errors):
            raise
        return [docs[error["index"]] for error in errors]
    return []


class NotNew(Exception):
    """A document assumed new (its creating event is in the batch) was already stored."""
