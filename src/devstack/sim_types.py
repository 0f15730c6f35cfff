"""The Horizon simulator's units and small records: stroop amounts and asset keys, an
account, a queued fault and a refused submission, shared by its network and its HTTP front.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from stellar_sdk import Asset

STROOPS = 10_000_000
BASE_FEE = 100
NATIVE = "native"
FAULTS = ("applied_then_504", "reset_before", "reset_after", "bad_seq", "no_trust", "underfunded", "slow")
MODES = ("lookup_404", "history_pruned")


def asset_key(asset: Asset) -> str:
    return NATIVE if asset.is_native() else f"{asset.code}:{asset.issuer}"


def to_stroops(amount: str) -> int:
    value = Decimal(amount) * STROOPS
    if value != value.to_integral_value():
        raise ValueError(f"{amount} has more than 7 decimals")
    return int(value)


def from_stroops(stroops: int) -> str:
    return f"{Decimal(stroops) / STROOPS:.7f}"


@dataclass
class SimAccount:
    account_id: str
    sequence: int
    balances: dict[str, int] = field(default_factory=dict)  # asset key -> stroops; a key is a trustline


@dataclass
class Fault:
    kind: str
    count: int
    delay: float = 0.0


class Rejected(Exception):
    """A submission refused (HTTP 400 with result codes)."""

    def __init__(self, tx_code: str, op_codes: list[str] | None = None, detail: str = "") -> None:
        super().__init__(tx_code)
        self.tx_code = tx_code
        self.op_codes = op_codes or []
        self.detail = detail
