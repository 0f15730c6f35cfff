"""The one place that reads the environment.

Every setting is an environment variable named ``LEDGER_*``; ``LEDGER_*_FILE`` names a
file holding the value instead (for secrets: URLs with passwords, the Kafka password),
as the official server images do. The three server URLs left unset mean "use the
embedded server", which ``ledger up`` starts and then passes to its children explicitly.

A ``ledger`` command run beside a running ``ledger up`` (the same data directory,
``./.ledger`` from the checkout) finds that stack's servers by itself: the supervisor
publishes them in ``run/state.json`` (no passwords) and ``secrets/stack.json`` (0600).
Variables that are set still win, one by one.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from runtime import logs

PROJECT_ROOT = Path(__file__).resolve().parents[2]


SECRET_FIELDS = frozenset({"kafka_sasl_password", "api_key"})  # never shown, whatever gets logged


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
    # The command API under `ledger up`: one process (one writer, so concurrent commands
    # form groups instead of conflicting), with a thread per request waiting for its group.
    command_workers: int = 1
    command_threads: int = 32
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
    log_format: str = "auto"  # json, text, or auto: text on a terminal, JSON otherwise
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
    # The chain worker reports the distribution account low (ledger.chain.distribution_low.v1)
    # when its balance of an asset is below what payouts in flight need plus this floor
    # ("XLM/7=100,USDC/7=2500", major units; unnamed assets: 0). It looks this often.
    chain_low_balance: str = ""
    chain_balance_seconds: float = 10.0
    # `ledger up` runs `ledger chain reconcile` beside the chain worker this often.
    reconcile_seconds: float = 60.0
    # `ledger audit verify` reads the store here when set: a read-only role, or a replica.
    audit_database_url: str | None = None
    # `ledger db migrate` (and `ledger up`) applies migrations as this role: the schema's owner.
    migration_database_url: str | None = None
    # Kafka clients' security (compose: SASL_PLAINTEXT with SCRAM-SHA-256).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-256"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    # The key the `ledger` CLI's API clients (`ledger payouts run`) send; unset: the admin
    # key `ledger up` made.
    api_key: str | None = None
    seal_interval_seconds: float = 60.0  # the sealer seals what was written since its last seal
    # The crash tests' hook (chain.kill_switch): `step[:n]` SIGKILLs the chain worker there.
    chain_kill_at: str | None = None
    migrations_dir: Path = PROJECT_ROOT / "migrations"
    ready_file: Path | None = None
    # A worker service (relay, projector, chain, expirer, sealer) serves /metrics, /readyz
    # and /healthz on this port (0: any free one); unset: none. `ledger up` sets it.
    metrics_port: int | None = None
    # `ledger up`: the first worker's metrics port, the next ones follow in the order
    # relay, projector, expirer, sealer, chain, reconcile; 0: free ports (run/state.json lists them).
    metrics_base_port: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, discover: bool | None = None) -> Settings:
        """Settings from ``environ`` (the process environment by default), completed from a
        running ``ledger up`` when ``discover`` (by default: when reading the process environment)."""
        if discover is None:
            discover = environ is None
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = _raw_value(environ, env_name(field.name))
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
        settings = cls(**values)  # type: ignore[arg-type]
        if discover:
            found = running_stack(settings.data_dir)
            names = {field.name for field in fields(cls)}
            extra = {k: v for k, v in found.items() if k in names and k not in values}
            if extra:
                settings = replace(settings, **{k: Path(v) if k.endswith("_file") else v for k, v in extra.items()})
        return settings

    def __repr__(self) -> str:
        """Never a password, whatever gets logged."""
        shown = ", ".join(
            f"{f.name}={'***' if f.name in SECRET_FIELDS and getattr(self, f.name) else _shown(getattr(self, f.name))}"
            for f in fields(self)
        )
        return f"Settings({shown})"

    def kafka_client(self) -> dict[str, str]:
        """The broker's address and the client security every Kafka client of ours uses."""
        config = {"bootstrap.servers": self.require("kafka_bootstrap")}
        if self.kafka_security_protocol.upper() != "PLAINTEXT":
            config["security.protocol"] = self.kafka_security_protocol
        if self.kafka_sasl_username:
            config |= {
                "sasl.mechanism": self.kafka_sasl_mechanism,
                "sasl.username": self.kafka_sasl_username,
                "sasl.password": self.kafka_sasl_password or "",
            }
        return config

    def __post_init__(self) -> None:
        if self.read_wait_max_waiters is not None and self.read_wait_max_waiters < 0:
            raise SettingsError("LEDGER_READ_WAIT_MAX_WAITERS must be 0 (never wait) or more")
        if not self.web_request_timeout_seconds > 0:
            raise SettingsError("LEDGER_WEB_REQUEST_TIMEOUT_SECONDS must be more than 0")
        if not self.chain_balance_seconds > 0:
            raise SettingsError("LEDGER_CHAIN_BALANCE_SECONDS must be more than 0")
        if self.log_format not in logs.FORMATS:
            raise SettingsError(f"LEDGER_LOG_FORMAT must be auto, json or text, not {_shown(self.log_format)}")

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

    @property
    def low_balance_floors(self) -> dict[str, str]:
        """Ledger asset to the floor kept on the distribution account, in major units as
        written (the chain worker reads them at the asset's scale)."""
        floors: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in self.chain_low_balance.split(","))):
            asset, sep, amount = (part.strip() for part in item.partition("="))
            if not sep or not asset or not amount:
                raise SettingsError(f"LEDGER_CHAIN_LOW_BALANCE: {item!r} must look like XLM/7=100")
            if asset in floors:
                raise SettingsError(f"LEDGER_CHAIN_LOW_BALANCE names {asset} twice")
            floors[asset] = amount
        return floors

    def require(self, name: str) -> str:
        """The URL of an external server, or a clear error telling how to get one."""
        value = getattr(self, name)
        if not value:
            raise SettingsError(
                f"{env_name(name)} is not set: run this under `ledger up`, which starts the "
                "embedded servers, or point it at a running server"
            )
        return str(value)


def redact(url: str, *, mask: str | None = "***") -> str:
    """A URL fit to print or store: any password is replaced by ``mask``, or left out when
    it is None (what is left still connects, with the password from a file)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username if mask is None else f"{parts.username}:{mask}"
    netloc = f"{user}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _shown(value: object) -> str:
    return repr(redact(value)) if isinstance(value, str) and "://" in value else repr(value)


def env_name(field_name: str) -> str:
    return f"LEDGER_{field_name.upper()}"


def env_names() -> set[str]:
    names = {env_name(field.name) for field in fields(Settings)}
    return names | {f"{name}_FILE" for name in names}


def _raw_value(environ: Mapping[str, str], name: str) -> str | None:
    """``NAME``, or the contents of the file ``NAME_FILE`` names (one trailing newline dropped)."""
    value = environ.get(name)
    path = environ.get(f"{name}_FILE")
    if value not in (None, "") or not path:
        return value
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return text.removesuffix("\n")


STATE_FILE = Path("run") / "state.json"  # the running stack, as `ledger up` publishes it (no secrets)
STACK_SECRETS_FILE = Path("secrets") / "stack.json"  # the same settings with their passwords (0600)


def running_stack(data_dir: Path) -> dict[str, str]:
    """The settings a running ``ledger up`` on ``data_dir`` published; {} when none runs.

    The supervisor holds an exclusive lock on the data directory while it runs, which is
    how a stale state file (from a stack that was killed) is told apart."""
    state_path = data_dir / STATE_FILE
    if not state_path.exists() or not _locked_by_a_supervisor(data_dir):
        return {}
    try:
        found = dict(json.loads(state_path.read_text()).get("settings", {}))
        secrets_path = data_dir / STACK_SECRETS_FILE
        if secrets_path.exists():
            found.update(json.loads(secrets_path.read_text()))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in found.items() if v is not None}


def _locked_by_a_supervisor(data_dir: Path) -> bool:
    try:
        fd = os.open(data_dir, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
