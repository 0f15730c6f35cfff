"""What the chain worker needs to know about Stellar: assets, keys, amounts, and how it
reaches Horizon."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from stellar_sdk import Asset, Keypair, Server
from stellar_sdk.client.requests_client import RequestsClient

from runtime.files import write_private

STROOPS = 10_000_000


def stellar_asset(spec: str) -> Asset:
    """``native`` or ``CODE:ISSUER`` (the values of LEDGER_STELLAR_ASSETS)."""
    if spec == "native":
        return Asset.native()
    code, _, issuer = spec.partition(":")
    return Asset(code, issuer)


def asset_key(asset: Asset) -> str:
    """How an asset is named in the worker's maps: ``native`` or ``CODE:ISSUER``."""
    return "native" if asset.is_native() else f"{asset.code}:{asset.issuer}"


def record_asset_key(record: dict[str, str]) -> str:
    """The same name for the asset of a Horizon record (a payment, a balance)."""
    return "native" if record["asset_type"] == "native" else f"{record['asset_code']}:{record['asset_issuer']}"


def chain_amount(stroops: int) -> str:
    """Minor units of a scale-7 ledger asset as a Stellar amount string ("12.3400000")."""
    return f"{Decimal(stroops) / STROOPS:.7f}"


def stroops_of(amount: str) -> int:
    value = Decimal(amount) * STROOPS
    if value != value.to_integral_value():
        raise ValueError(f"{amount} has more than 7 decimals")
    return int(value)


def _keypair(secret: object, where: str) -> Keypair:
    if not isinstance(secret, str):
        raise ValueError(f"{where} is missing or not a string")
    try:
        return Keypair.from_secret(secret)
    except ValueError:
        raise ValueError(f"{where} is not a valid Stellar secret seed (S..., 56 characters)") from None


@dataclass(frozen=True, repr=False)
class Keys:
    """The distribution account pays; channel accounts are the transactions' sources, so
    payouts on different channels never wait on each other's sequence numbers."""

    distribution: Keypair
    channels: tuple[Keypair, ...]

    @classmethod
    def load(cls, path: Path) -> Keys:
        """The keys in a secrets file; an error names what is wrong and never echoes a seed
        (the SDK's own message would)."""
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("channels", []), list):
            raise ValueError(f'{path}: expected {{"distribution": "S...", "channels": ["S...", ...]}}')
        return cls(
            distribution=_keypair(raw.get("distribution"), f"{path}: distribution"),
            channels=tuple(_keypair(s, f"{path}: channels[{n}]") for n, s in enumerate(raw.get("channels", []))),
        )

    @classmethod
    def generate(cls, channels: int) -> Keys:
        return cls(Keypair.random(), tuple(Keypair.random() for _ in range(channels)))

    def save(self, path: Path) -> None:
        secrets = {"distribution": self.distribution.secret, "channels": [k.secret for k in self.channels]}
        write_private(path, json.dumps(secrets, indent=2))

    def __repr__(self) -> str:  # never the secrets, whatever gets logged
        return f"Keys(distribution={self.distribution.public_key}, channels={len(self.channels)})"


def horizon_client(url: str, *, retries: int = 0, timeout: int = 5, post_timeout: int | None = None) -> Server:
    """A Horizon client for one of the worker's threads (each keeps its own session)."""
    options = {} if post_timeout is None else {"post_timeout": post_timeout}
    return Server(url, client=RequestsClient(num_retries=retries, request_timeout=timeout, **options))
