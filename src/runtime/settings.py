"""The one place that reads the environment.

Every setting is an environment variable named ``LEDGER_*``. The three server URLs
left unset mean "use the embedded server", which ``ledger up`` starts and then passes
to its children explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    mongo_url: str | None = None
    mongo_db: str = "ledger"
    data_dir: Path = Path(".ledger")
    host: str = "127.0.0.1"
    command_port: int = 8081
    query_port: int = 8082
    embedded_postgres_port: int = 55432
    embedded_kafka_port: int = 19092
    embedded_mongo_port: int = 27117
    kafka_topic: str = "ledger.events"
    kafka_partitions: int = 4
    kafka_retention_ms: int = -1  # for a topic the ledger creates; -1 keeps events forever
    web_workers: int = 2
    web_threads: int = 4
    # A request (headers and body) must have fully arrived this long after its connection
    # was accepted (or, on a kept-alive connection, after its first byte), or it is
    # answered 408 and closed; no thread waits on a client meanwhile (runtime.web_worker).
    web_request_timeout_seconds: float = 10.0
    db_pool_size: int = 4
    read_wait_seconds: float = 5.0
    # How many `min_position` waits one query API process holds at once; past it, 503
    # busy at once. Unset: one fewer than web_threads, so waits never take every thread.
    read_wait_max_waiters: int | None = None
    write_attempts: int = 20
    log_level: str = "INFO"
    log_format: str = "json"
    # Stellar: which ledger assets pay out on chain ("ASSET=native" or "ASSET=CODE:ISSUER",
    # comma-separated; chain amounts have 7 decimals, so each asset must have scale 7).
    stellar_assets: str = "XLM/7=native"
    # Unset: `ledger up` runs the bundled Horizon simulator and uses it.
    horizon_url: str | None = None
    stellar_network_passphrase: str = "Ledger Horizon Simulator ; not a real network"
    # JSON {"distribution": "S...", "channels": ["S...", ...]}; never logged. Unset under
    # `ledger up` with the simulator: one is made in the data directory.
    stellar_secrets_file: Path | None = None
    embedded_horizon_port: int = 8083
    chain_tx_timeout_seconds: int = 30  # an envelope's time bounds: now .. now + this
    chain_ledger_window: int = 10  # and its ledger bounds: latest .. latest + this
    chain_stuck_after_attempts: int = 8  # then a payout is reported stuck (and still retried)
    # `ledger audit verify` reads the store here when set: a read-only role, or a replica.
    audit_database_url: str | None = None
    seal_interval_seconds: float = 60.0  # the sealer seals what was written since its last seal
    migrations_dir: Path = PROJECT_ROOT / "migrations"
    ready_file: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(env_name(field.name))
            if raw is None or raw == "":
                continue
            kind = field.type
            try:
                if kind in ("int", "int | None"):
                    values[field.name] = int(raw)
                elif kind == "float":
                    values[field.name] = float(raw)
                elif kind in ("Path", "Path | None"):
                    values[field.name] = Path(raw)
                else:
                    values[field.name] = raw
            except ValueError:
                raise SettingsError(f"{env_name(field.name)}={raw!r} is not a valid {kind}") from None
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.read_wait_max_waiters is not None and self.read_wait_max_waiters < 0:
            raise SettingsError("LEDGER_READ_WAIT_MAX_WAITERS must be 0 (never wait) or more")
        if not self.web_request_timeout_seconds > 0:
            raise SettingsError("LEDGER_WEB_REQUEST_TIMEOUT_SECONDS must be more than 0")

    @property
    def read_waiters(self) -> int:
        """``read_wait_max_waiters``, or one fewer than the threads per process (at least 1)."""
        if self.read_wait_max_waiters is not None:
            return self.read_wait_max_waiters
        return max(self.web_threads - 1, 1)

    @property
    def payout_assets(self) -> dict[str, str]:
        """Ledger asset to Stellar asset ("native" or "CODE:ISSUER")."""
        mapping: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in self.stellar_assets.split(","))):
            asset, sep, chain = item.partition("=")
            if not sep or not asset.endswith("/7") or not chain:
                raise SettingsError(
                    f"LEDGER_STELLAR_ASSETS: {item!r} must look like XLM/7=native or USDC/7=USDC:G... "
                    "(scale 7, as on chain)"
                )
            mapping[asset.strip()] = chain.strip()
        return mapping

    def require(self, name: str) -> str:
        """The URL of an external server, or a clear error telling how to get one."""
        value = getattr(self, name)
        if not value:
            raise SettingsError(
                f"{env_name(name)} is not set: run this under `ledger up`, which starts the "
                "embedded servers, or point it at a running server"
            )
        return str(value)


def env_name(field_name: str) -> str:
    return f"LEDGER_{field_name.upper()}"


def env_names() -> set[str]:
    return {env_name(field.name) for field in fields(Settings)}
