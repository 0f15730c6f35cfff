"""How each account message of the event contract changes an account's four balances.

The projector applies it to the read model and the trial balance to an export. It is
the domain's own table (``ledger.accounts.MOVEMENTS``, which the aggregate's events are
tested against) keyed by message type instead of event class, so the aggregate, the
read model and the trial balance cannot disagree. (The auditors' verifier keeps its own
arithmetic on purpose; see ``audit.book_check``.)
"""

from __future__ import annotations

from contracts.events import MOVEMENT_TYPES
from ledger.accounts import MOVEMENTS

# (field, sign, the data key holding the amount), per message type.
BALANCE_CHANGES: dict[str, tuple[tuple[str, int, str], ...]] = {
    MOVEMENT_TYPES[kind]: changes for kind, changes in MOVEMENTS.items()
}
