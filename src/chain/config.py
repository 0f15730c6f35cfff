"""The chain worker's configuration (assets, keys, bounds, the distribution account's
floors) from the ledger's settings, and the simulator's accounts for ``ledger up``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import requests
from stellar_sdk import Asset

from chain.balance_watch import low_balance_floors
from chain.stellar import Keys, stellar_asset
from runtime.settings import Settings, SettingsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainSettings:
    horizon_url: str
    passphrase: str
    assets: dict[str, Asset]  # ledger asset -> Stellar asset
    keys: Keys
    tx_timeout_seconds: int = 30  # an envelope's time bounds: now .. now + this
    ledger_window: int = 10  # and its ledger bounds: latest .. latest + this
    stuck_after_attempts: int = 8  # then the payout is reported stuck (and still retried)
    low_balance_floors: dict[str, int] = field(default_factory=dict)  # ledger asset -> minor units
    balance_seconds: float = 10.0  # how often the distribution account's balances are judged
    base_fee: int = 100
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0


def chain_settings(settings: Settings) -> ChainSettings:
    """The worker's configuration from the ledger's settings (keys from the secrets file)."""
    if settings.stellar_secrets_file is None:
        raise SettingsError("LEDGER_STELLAR_SECRETS_FILE is not set: the chain worker signs with the keys in it")
    return ChainSettings(
        horizon_url=settings.require("horizon_url"),
        passphrase=settings.stellar_network_passphrase,
        assets={asset: stellar_asset(spec) for asset, spec in settings.payout_assets.items()},
        keys=Keys.load(settings.stellar_secrets_file),
        tx_timeout_seconds=settings.chain_tx_timeout_seconds,
        ledger_window=settings.chain_ledger_window,
        stuck_after_attempts=settings.chain_stuck_after_attempts,
        low_balance_floors=low_balance_floors(settings),
        balance_seconds=settings.chain_balance_seconds,
    )


SIMULATOR_FUNDING_XLM = "1000000"


def prepare_simulator(settings: ChainSettings) -> bool:
    """On the bundled simulator only, open and fund the worker's accounts (a real
    network's accounts are the operator's to create). Returns whether it was the simulator."""
    root = requests.get(settings.horizon_url, timeout=10).json()
    if not root.get("simulator"):
        return False
    for key in (settings.keys.distribution, *settings.keys.channels):
        reply = requests.post(
            f"{settings.horizon_url}/_sim/accounts",
            json={"account_id": key.public_key, "xlm": SIMULATOR_FUNDING_XLM},
            timeout=10,
        )
        reply.raise_for_status()
    log.warning("using the Horizon SIMULATOR, not a Stellar network", extra={"horizon": settings.horizon_url})
    return True
