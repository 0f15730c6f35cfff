"""A trial balance recomputed from event payloads alone: no aggregate, no read model.

Only the account movement events change balances (how each does is the table the
projector uses too, ``BALANCE_CHANGES``); per asset, posted credits minus posted
debits over every account (client and system) must net to zero, and so must pending.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from contracts.balances import BALANCE_CHANGES
from contracts.events import ACCOUNT_OPENED
from ledger.accounts import BALANCE_FIELDS
from ledger.money import Asset


@dataclass
class Balances:
    asset: str
    posted_debits: int = 0
    posted_credits: int = 0
    pending_debits: int = 0
    pending_credits: int = 0

    @property
    def posted(self) -> int:
        return self.posted_credits - self.posted_debits

    @property
    def pending(self) -> int:
        return self.pending_credits - self.pending_debits


@dataclass
class TrialBalance:
    accounts: dict[str, Balances] = field(default_factory=dict)
    position: int = 0  # the last event applied
    time: str | None = None

    def apply(self, event: dict[str, Any]) -> None:
        data = event["data"]
        if event["type"] == ACCOUNT_OPENED:
            self.accounts.setdefault(data["account"], Balances(data["asset"]))
        changes = BALANCE_CHANGES.get(event["type"])
        if changes:
            balances = self.accounts.setdefault(data["account"], Balances(data["asset"]))
            for name, sign, key in changes:
                setattr(balances, name, getattr(balances, name) + sign * int(data[key]))
        self.position = int(event["position"])
        self.time = event["time"]

    def totals(self) -> dict[str, tuple[int, int]]:
        """Per asset: (net posted, net pending); both zero in a sound ledger."""
        sums: dict[str, tuple[int, int]] = {}
        for balances in self.accounts.values():
            posted, pending = sums.get(balances.asset, (0, 0))
            sums[balances.asset] = (posted + balances.posted, pending + balances.pending)
        return sums

    def rows(self) -> list[dict[str, str]]:
        rows = []
        for account, b in sorted(self.accounts.items(), key=lambda item: (item[1].asset, item[0])):
            unit = Asset.parse(b.asset)
            row = {"asset": b.asset, "account": account}
            row |= {name: unit.format(getattr(b, name)) for name in BALANCE_FIELDS}
            rows.append(row)
        return rows

    def report(self) -> dict[str, Any]:
        totals = {}
        for asset, (posted, pending) in sorted(self.totals().items()):
            unit = Asset.parse(asset)
            totals[asset] = {"posted": unit.format(posted), "pending": unit.format(pending)}
        return {"as_of_position": self.position, "as_of_time": self.time, "accounts": self.rows(), "totals": totals}

    def write_csv(self, out: IO[str]) -> None:
        writer = csv.DictWriter(out, ["asset", "account", *BALANCE_FIELDS])
        writer.writeheader()
        writer.writerows(self.rows())
        for asset, (posted, pending) in sorted(self.totals().items()):
            unit = Asset.parse(asset)
            writer.writerow(
                {
                    "asset": asset,
                    "account": "TOTAL (credits - debits)",
                    "posted_credits": unit.format(posted),
                    "pending_credits": unit.format(pending),
                }
            )


def trial_balance(
    stream: Iterable[dict[str, Any]], *, to_position: int | None = None, to_time: datetime | None = None
) -> TrialBalance:
    result = TrialBalance()
    for event in stream:
        if to_position is not None and int(event["position"]) > to_position:
            break
        if to_time is not None and datetime.fromisoformat(event["time"]) > to_time:
            break
        result.apply(event)
    return result
