"""Read-model generations: a rebuild fills a new database while queries read the old one.

Generation 1 is the database named by ``LEDGER_MONGO_DB``; generation N is that name
with ``_gN``. A small control collection in the base database says which one is active
and whether the projector has been asked to pause (for the moment of the switch).
Queries resolve the active generation on every request, so a switch is atomic for them.
"""

from __future__ import annotations

from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

CONTROL = "read_model_control"


class Generations:
    def __init__(self, client: MongoClient[Any], base_name: str) -> None:
        self.client = client
        self.base_name = base_name
        self.control = client[base_name][CONTROL]

    def name(self, generation: int) -> str:
        return self.base_name if generation == 1 else f"{self.base_name}_g{generation}"

    def database(self, generation: int) -> Database[Any]:
        return self.client[self.name(generation)]

    def drop(self, generation: int) -> None:
        """Delete a generation's read models (the base database keeps the control collection)."""
        if generation == 1:
            database = self.database(1)
            for name in database.list_collection_names():
                if name != CONTROL:
                    database.drop_collection(name)
        else:
            self.client.drop_database(self.name(generation))

    def active(self) -> int:
        doc = self.control.find_one({"_id": "active"})
        return int(doc["generation"]) if doc else 1

    def active_database(self) -> Database[Any]:
        return self.database(self.active())

    def activate(self, generation: int) -> None:
        self.control.update_one({"_id": "active"}, {"$set": {"generation": generation}}, upsert=True)

    def state(self) -> tuple[int, bool]:
        """The active generation and whether a pause is requested, in one read (the
        projector asks before every batch)."""
        docs = {doc["_id"]: doc for doc in self.control.find({"_id": {"$in": ["active", "pause"]}})}
        active = int(docs["active"]["generation"]) if "active" in docs else 1
        return active, bool(docs.get("pause", {}).get("requested"))

    # The pause handshake between a rebuild and the projector -------------------------

    def request_pause(self) -> None:
        self.control.update_one({"_id": "pause"}, {"$set": {"requested": True, "acknowledged": False}}, upsert=True)

    def pause_requested(self) -> bool:
        doc = self.control.find_one({"_id": "pause"})
        return bool(doc and doc.get("requested"))

    def acknowledge_pause(self) -> None:
        self.control.update_one({"_id": "pause"}, {"$set": {"acknowledged": True}})

    def pause_acknowledged(self) -> bool:
        doc = self.control.find_one({"_id": "pause"})
        return bool(doc and doc.get("acknowledged"))

    def resume(self) -> None:
        self.control.delete_one({"_id": "pause"})
