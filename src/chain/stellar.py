"""What the chain worker needs to know about Stellar: assets, keys, amounts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from stellar_sdk import Asset, Keypair

STROOPS = 10_000_000


def stellar_asset(spec: str) -> Asset:
    """``native`` or ``CODE:ISSUER`` (the values of LEDGER_STELLAR_ASSETS)."""
    if spec == "native":
        return Asset.native()
    code, _, issuer = spec.partition(":")
    return Asset(code, issuer)


def chain_amount(stroops: int) -> str:
    """Minor units of a scale-7 ledger asset as a Stellar amount string ("12.3400000")."""
    return f"{Decimal(stroops) / STROOPS:.7f}"


def stroops_of(amount: str) -> int:
    value = Decimal(amount) * STROOPS
    if value != value.to_integral_value():
        raise ValueError(f"{amount} has more than 7 decimals")
    return int(value)


@dataclass(frozen=True, repr=False)
class Keys:
    """The distribution account pays; channel accounts are the transactions' sources, so
    payouts on different channels never wait on each other's sequence numbers."""

    distribution: Keypair
    channels: tuple[Keypair, ...]

    @classmethod
    def load(cls, path: Path) -> Keys:
        raw = json.loads(path.read_text())
        return cls(
            distribution=Keypair.from_secret(raw["distribution"]),
            channels=tuple(Keypair.from_secret(secret) for secret in raw.get("channels", [])),
        )

    @classmethod
    def generate(cls, channels: int) -> Keys:
        return cls(Keypair.random(), tuple(Keypair.random() for _ in range(channels)))

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {"distribution": self.distribution.secret, "channels": [k.secret for k in self.channels]}, indent=2
            )
        )
        path.chmod(0o600)

    def __repr__(self) -> str:  # never the secrets, whatever gets logged
        return f"Keys(distribution={self.distribution.public_key}, channels={len(self.channels)})"
