"""How money and balances are written in both APIs' answers, as msgspec structs that the
OpenAPI documents are made from (``commands.responses``, ``queries.responses``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

Amount = Annotated[str, msgspec.Meta(description="A decimal string in major units", examples=["12.34"])]
Position = Annotated[int, msgspec.Meta(ge=0, description="An event-store position (for min_position)")]


class Balance(msgspec.Struct):
    """An account's totals, and what it has available (posted credits less posted and
    pending debits)."""

    posted_debits: Amount
    posted_credits: Amount
    pending_debits: Amount
    pending_credits: Amount
    available: Amount


class FeeLeg(msgspec.Struct):
    """The fee a transfer paid: its own leg, ``{id}$fee``, to the asset's fee account."""

    transfer_id: str
    amount: Amount
    payer: str
