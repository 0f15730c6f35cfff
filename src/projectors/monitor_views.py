"""An account's monitors in its read-model document: each with its state now.

Monitor events are account events (``ledger.monitors``): they advance the account
document's version like any other, and keep its ``monitors`` list, which the query API
answers with the account.
"""

from __future__ import annotations

from typing import Any

from contracts.events import MONITOR_CLEARED, MONITOR_REMOVED, MONITOR_SET, MONITOR_TRIGGERED, LedgerEvent

MONITOR_TYPES = {MONITOR_SET, MONITOR_REMOVED, MONITOR_TRIGGERED, MONITOR_CLEARED}


def monitors_changed(doc: dict[str, Any], event: LedgerEvent) -> None:
    """Replace (never change in place: the writer's cache shares documents) ``doc``'s list."""
    data = event.data
    others = [m for m in doc.get("monitors", []) if m["id"] != data["monitor"]]
    if event.type == MONITOR_REMOVED:
        doc["monitors"] = others
        return
    monitor = {
        "id": data["monitor"],
        "balance": data["balance"],
        "when": data["when"],
        "amount": data["amount"],
        "state": "triggered" if event.type == MONITOR_TRIGGERED else "clear",
        "since": event.time,
    }
    doc["monitors"] = sorted([*others, monitor], key=lambda m: m["id"])
