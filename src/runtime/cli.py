"""The ``ledger`` command. Each subcommand builds its parts from settings and runs them."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import psycopg

from runtime import logs, metrics, web
from runtime.settings import Settings, SettingsError

log = logging.getLogger("ledger")


def _settings(*, discover: bool = True) -> Settings:
    try:
        settings = Settings.from_env(discover=discover)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logs.configure(settings.log_level, settings.log_format)
    return settings


STOP_GRACE_SECONDS = 10.0


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM. A worker that has not finished stopping after a
    grace period exits anyway: when its supervisor died, the servers it would say
    goodbye to (broker, database) are going down with it, and a client library closing
    a connection to a vanished server can wait far longer than anyone should."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        if not stop.is_set():
            watchdog = threading.Timer(STOP_GRACE_SECONDS, os._exit, args=(1,))
            watchdog.daemon = True
            watchdog.start()
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _ready(settings: Settings, operations_url: str | None = None) -> None:
    """Tell ``ledger up`` the service is ready: its ready file, holding the URL of its
    /metrics and /readyz (if it serves them), which the supervisor publishes."""
    if settings.ready_file is not None:
        settings.ready_file.parent.mkdir(parents=True, exist_ok=True)
        written = settings.ready_file.with_suffix(".tmp")
        written.write_text(operations_url or "")
        written.replace(settings.ready_file)  # whole, or not there: the supervisor reads it once it exists


@contextmanager
def _operations(settings: Settings, service: str, readiness: dict[str, metrics.Check]) -> Iterator[str | None]:
    """A worker service's /metrics (needs a key with the metrics scope), /readyz and
    /healthz on LEDGER_METRICS_PORT; yields their URL, or None when the port is unset."""
    if settings.metrics_port is None:
        yield None
        return
    from auth.http import Authenticate
    from auth.store import KeyStore

    keys = KeyStore(_require(settings, "database_url"), pool_size=1)
    app = web.create_base_app(Authenticate(keys), api=service)
    app.add_route("/metrics", metrics.MetricsResource())
    app.add_route("/readyz", metrics.Readiness(readiness))
    server, url = metrics.serve(app, settings.host, settings.metrics_port)
    try:
        yield url
    finally:
        server.shutdown()
        keys.close()


def _require(settings: Settings, name: str) -> str:
    try:
        return settings.require(name)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _kafka_check(settings: Settings) -> metrics.Check:
    from projectors import kafka

    return metrics.kafka_check(kafka.admin_client(_kafka(settings)))


def _kafka(settings: Settings) -> dict[str, str]:
    try:
        return settings.kafka_client()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """An event-sourced double-entry payment ledger."""


@main.command()
@click.option("--fresh", is_flag=True, help="Delete the data directory first.")
def up(fresh: bool) -> None:
    """Start the whole system (embedded servers unless URLs are set) until Ctrl-C."""
    from runtime.supervisor import AlreadyRunning, Stack, install_signal_handlers

    stack = Stack(_settings(discover=False), fresh=fresh)
    install_signal_handlers(stack)
    try:
        code = stack.run()
    except KeyboardInterrupt:
        code = 130
    except (AlreadyRunning, RuntimeError, TimeoutError, subprocess.CalledProcessError, psycopg.OperationalError) as exc:
        # Start-up failures (a port in use, a server that would not start, a database
        # that cannot be reached) are reported plainly; everything already started has
        # been stopped by then.
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command("compose-secrets")
@click.option("--dir", "directory", default="secrets", show_default=True, help="Where compose.yaml reads them.")
def compose_secrets(directory: str) -> None:
    """Make the passwords and URLs compose.yaml mounts (0600; existing ones are kept)."""
    from pathlib import Path

    from runtime.compose_secrets import write_compose_secrets

    written = write_compose_secrets(Path(directory))
    click.echo(f"{len(written)} secret file(s) written in {directory}/ (never commit them)")


@main.group()
def db() -> None:
    """Event-store database tasks."""


@db.command("migrate")
@click.option("--writer-password-file", type=click.Path(exists=True, dir_okay=False), help="Let ledger_writer log in.")
@click.option("--reader-password-file", type=click.Path(exists=True, dir_okay=False), help="Let ledger_reader log in.")
def db_migrate(writer_password_file: str | None, reader_password_file: str | None) -> None:
    """Apply pending migrations (records what it applied; safe to run twice), as the
    schema's owner (LEDGER_MIGRATION_DATABASE_URL, else LEDGER_DATABASE_URL); then let the
    ledger's roles log in with the passwords in the files given."""
    from pathlib import Path

    from runtime.migrations import READER_ROLE, WRITER_ROLE, enable_logins, migrate

    settings = _settings()
    url = settings.migration_database_url or _require(settings, "database_url")
    applied = migrate(url, settings.migrations_dir)
    click.echo(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    files = {WRITER_ROLE: writer_password_file, READER_ROLE: reader_password_file}
    passwords = {role: Path(f).read_text().strip() for role, f in files.items() if f}
    if passwords:
        enable_logins(url, passwords)
        click.echo(f"login enabled for {', '.join(sorted(passwords))}")


@main.group()
def keys() -> None:
    """API keys: every request to the command and query APIs needs one."""


def _key_store(settings: Settings) -> Any:
    from auth.store import KeyStore

    return KeyStore(_require(settings, "database_url"), pool_size=1)


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="read, accounts, transfers, deposits, payouts, metrics or admin; repeatable.",
)
@click.option(
    "--accounts",
    "accounts",
    multiple=True,
    help="Limit the key to accounts matching this pattern ('shop-42:*'); repeatable.",
)
@click.option("--credits-within-accounts", is_flag=True, help="A limited key may credit only its own accounts too.")
@click.option("--signed-only", is_flag=True, help="Refuse bearer use: only LEDGER-HMAC-SHA256 signed requests.")
def keys_create(
    name: str, scopes: tuple[str, ...], accounts: tuple[str, ...], credits_within_accounts: bool, signed_only: bool
) -> None:
    """Make a key; prints {"key_id", "secret", "token"} once (the secret is stored only as a hash)."""
    import json

    from auth.keys import KeyDefinitionError

    store = _key_store(_settings())
    try:
        key, secret = store.create(
            name, scopes, accounts, credits_within_accounts=credits_within_accounts, signed_only=signed_only
        )
    except KeyDefinitionError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(json.dumps({"key_id": key.key_id, "secret": secret, "token": f"{key.key_id}.{secret}"}))


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def keys_list(as_json: bool) -> None:
    """Every key, revoked ones too (never a secret)."""
    import json

    store = _key_store(_settings())
    try:
        found = store.list()
    finally:
        store.close()
    for key in found:
        info = key.describe()
        if as_json:
            click.echo(json.dumps(info))
        else:
            state = f"revoked {info['revoked_at']}" if key.revoked else "active"
            limits = f" accounts={','.join(key.accounts)}" if key.accounts else ""
            signed = " signed-only" if key.signed_only else ""
            click.echo(f"{key.key_id}  {key.name!r}  scopes={','.join(info['scopes'])}{limits}{signed}  {state}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: every API process refuses it within a few seconds."""
    store = _key_store(_settings())
    try:
        key = store.revoke(key_id)
    finally:
        store.close()
    if key is None:
        raise click.ClickException(f"no key {key_id!r}")
    click.echo(f"revoked {key_id} at {key.revoked_at.isoformat() if key.revoked_at else '?'}")


@main.command()
def relay() -> None:
    """Publish the event store's notification log to Kafka."""
    from commands.application import Ledger, event_store_env
    from projectors.relay import Relay, RelayState

    settings = _settings()
    database_url = _require(settings, "database_url")
    stop = _stop_on_signals()
    ledger = Ledger(event_store_env(settings))
    state = RelayState(database_url, settings.kafka_topic)
    readiness = {"postgres": metrics.postgres_check(database_url), "kafka": _kafka_check(settings)}
    try:
        with _operations(settings, "relay", readiness) as url:
            Relay(
                ledger,
                state,
                database_url,
                _kafka(settings),
                settings.kafka_topic,
                settings.kafka_partitions,
                retention_ms=settings.kafka_retention_ms,
            ).run(stop, on_ready=lambda: _ready(settings, url))
    finally:
        state.close()
        ledger.close()


@main.command()
def expire() -> None:
    """Void pending transfers whose timeout has passed."""
    from commands.application import Ledger, event_store_env
    from commands.expirer import Expirer

    settings = _settings()
    stop = _stop_on_signals()
    ledger = Ledger(event_store_env(settings), actor="service:expirer")
    database_url = _require(settings, "database_url")
    expirer = Expirer(ledger, database_url)
    try:
        with _operations(settings, "expirer", {"postgres": metrics.postgres_check(database_url)}) as url:
            expirer.run(stop, on_ready=lambda: _ready(settings, url))
    finally:
        expirer.close()
        ledger.close()


@main.command()
def project() -> None:
    """Apply Kafka events to the MongoDB read models."""
    import pymongo

    from projectors.projector import Projector
    from projectors.store_head import StoreHead
    from queries.generations import Generations

    settings = _settings()
    stop = _stop_on_signals()
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(_require(settings, "mongo_url"))
    generations = Generations(client, settings.mongo_db)
    store_head = StoreHead(_require(settings, "database_url"))
    readiness = {
        "kafka": _kafka_check(settings),
        "mongodb": metrics.mongodb_check(_require(settings, "mongo_url")),
        "postgres": metrics.postgres_check(_require(settings, "database_url")),
    }
    try:
        with _operations(settings, "projector", readiness) as url:
            Projector(
                generations.active_database(),
                _kafka(settings),
                settings.kafka_topic,
                settings.kafka_partitions,
                store_head=store_head,
                retention_ms=settings.kafka_retention_ms,
                generations=generations,
            ).run(stop, on_ready=lambda: _ready(settings, url))
    finally:
        store_head.close()
        client.close()


@main.group(invoke_without_command=True)
@click.pass_context
def chain(ctx: click.Context) -> None:
    """Pay payouts out on Stellar (and report each outcome to the ledger).

    `ledger chain reconcile` compares the chain with the books instead."""
    if ctx.invoked_subcommand is not None:
        return
    from chain.config import chain_settings, prepare_simulator
    from chain.worker import ChainWorker
    from commands.application import Ledger, event_store_env

    settings = _settings()
    database_url = _require(settings, "database_url")
    if settings.stellar_secrets_file is None:
        raise click.ClickException("LEDGER_STELLAR_SECRETS_FILE is not set (see README: Stellar)")
    try:
        config = chain_settings(settings)
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"Stellar settings: {exc}") from None
    prepare_simulator(config)
    stop = _stop_on_signals()
    ledger = Ledger(event_store_env(settings), payout_assets=settings.payout_assets, actor="service:chain")
    import requests

    readiness = {
        "postgres": metrics.postgres_check(database_url),
        "kafka": _kafka_check(settings),
        "horizon": lambda: requests.get(config.horizon_url, timeout=2).raise_for_status(),
    }
    try:
        with _operations(settings, "chain", readiness) as url:
            ChainWorker(
                config,
                database_url,
                ledger,
                _kafka(settings),
                settings.kafka_topic,
                settings.kafka_partitions,
            ).run(stop, on_ready=lambda: _ready(settings, url))
    finally:
        ledger.close()


class _NothingDone(click.ClickException):
    """Exit 2: nothing was done (bad input, settings, a server unreachable); commands keep 1
    for what they found (differences, failed rows)."""

    exit_code = 2


@chain.command("reconcile")
@click.option("--since", default=None, help="RFC 3339: only payments and payouts at or after it.")
@click.option(
    "--every",
    type=click.FloatRange(min=1),
    default=None,
    help="Run every this many seconds as a service (metrics on LEDGER_METRICS_PORT) until stopped.",
)
def chain_reconcile(since: str | None, every: float | None) -> None:
    """Compare the chain's payments with the ledger's payouts, deposits and clearing accounts.

    Prints a JSON report; exits 1 when there is any difference, 0 when none, 2 when it
    could not compare."""
    import json

    import requests

    from chain.config import chain_settings
    from chain.reconcile import UNREADABLE, Reconciler, run_periodically
    from chain.store import ChainStore
    from commands.application import Ledger, event_store_env

    moment = _moment(since)
    try:
        settings = _settings()
        database_url = settings.require("database_url")
        if settings.stellar_secrets_file is None:
            raise SettingsError("LEDGER_STELLAR_SECRETS_FILE is not set (see README: Stellar payouts)")
        config = chain_settings(settings)
    except click.ClickException as exc:
        raise _NothingDone(exc.message) from None
    except (OSError, ValueError, KeyError) as exc:
        raise _NothingDone(f"settings: {exc}") from None
    try:
        ledger = Ledger(event_store_env(settings), actor="service:reconcile")
    except UNREADABLE as exc:
        raise _NothingDone(f"could not read the books: {type(exc).__name__}: {exc}") from None
    store = ChainStore(database_url)
    reconciler = Reconciler(config, store, ledger)
    try:
        if every is None:
            try:
                report = reconciler.run(moment)
            except UNREADABLE as exc:
                raise _NothingDone(f"could not read the chain or the books: {type(exc).__name__}: {exc}") from None
            click.echo(json.dumps(report.as_json(), indent=2))
            sys.exit(1 if report.differences else 0)
        stop = _stop_on_signals()
        readiness = {
            "postgres": metrics.postgres_check(database_url),
            "horizon": lambda: requests.get(config.horizon_url, timeout=2).raise_for_status(),
        }
        with _operations(settings, "reconcile", readiness) as url:
            _ready(settings, url)
            run_periodically(reconciler, moment, every, stop)
    finally:
        store.close()
        ledger.close()


@main.group()
def payouts() -> None:
    """Payout runs from a shell, through the APIs (see README: Payout runs)."""


@payouts.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "run_id", default=None, help="The run's id (a CSV file needs one; JSON names its own).")
@click.option("--start", "start_it", is_flag=True, help="Start the run once it is stored.")
@click.option("--follow", is_flag=True, help="Show a progress bar until the run ends; exit 1 if any row failed.")
@click.option("--command-url", default=None, help="Default: the running stack's (run/state.json).")
@click.option("--query-url", default=None, help="Default: the running stack's.")
def payouts_run(
    file: Path, run_id: str | None, start_it: bool, follow: bool, command_url: str | None, query_url: str | None
) -> None:
    """Upload a payout run's file (CSV: id,account,amount,destination[,memo]; or JSON).

    The key is LEDGER_API_KEY, else the admin key `ledger up` made. A refused file lists
    every bad row; exit 2 when the run could not be sent or started."""
    import json

    import requests

    from runtime import run_client

    settings = _settings()
    token = os.environ.get("LEDGER_API_KEY")
    try:
        if command_url and query_url:
            key = token or run_client._read_key(settings.data_dir / "admin.key")
            apis = run_client.Apis(command_url.rstrip("/"), query_url.rstrip("/"), key)
        else:
            apis = run_client.Apis.of_stack(settings.data_dir, token)
        http = run_client.session(apis.token)
        run = run_client.upload(apis, http, file, run_id)
        click.echo(json.dumps(run))
        if start_it:
            run = run_client.start(apis, http, run["id"])
            click.echo(json.dumps(run))
        if not follow:
            return
        view = run_client.follow(apis, http, run, sys.stderr)
    except (run_client.RunFailed, requests.RequestException) as exc:
        raise _NothingDone(str(exc)) from None
    click.echo(json.dumps(view))
    sys.exit(0 if view["state"] == "completed" and not view["failed"] else 1)  # failed: as the run completed


@main.command("horizon-sim")
@click.option("--port", type=int, default=None, help="Default: LEDGER_EMBEDDED_HORIZON_PORT.")
@click.option("--close-seconds", type=float, default=1.0, show_default=True, help="Time between ledgers.")
def horizon_sim(port: int | None, close_seconds: float) -> None:
    """Run the Horizon SIMULATOR (not a Stellar network: for offline runs and tests)."""
    from chain.horizon_sim import Simulator

    settings = _settings()
    stop = _stop_on_signals()
    sim = Simulator(
        settings.host, port or settings.embedded_horizon_port, settings.stellar_network_passphrase, close_seconds
    ).start()
    log.info("horizon simulator serving", extra={"url": sim.url})
    _ready(settings)
    stop.wait()
    sim.stop()


@main.command()
@click.option("--group", default="ledger-tail", show_default=True, help="Kafka consumer group.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest event when the group is new.")
@click.option("--checkpoints", is_flag=True, help="Show the relay's checkpoint messages too.")
@click.option("--max", "max_events", type=int, default=None, help="Stop after this many events.")
@click.option("--idle", type=float, default=None, help="Stop after this many seconds without an event.")
def tail(
    group: str, as_json: bool, from_beginning: bool, checkpoints: bool, max_events: int | None, idle: float | None
) -> None:
    """Follow the event stream and print it."""
    import json
    import time

    from confluent_kafka import Consumer

    from projectors import kafka
    from projectors.messages import CHECKPOINT, headers_of

    settings = _settings()
    stop = _stop_on_signals()
    config = kafka.consumer_config(_kafka(settings), group)
    config["auto.offset.reset"] = "earliest" if from_beginning else "latest"
    consumer = Consumer(config)
    consumer.subscribe([settings.kafka_topic])
    shown, last_event = 0, time.monotonic()
    try:
        while not stop.is_set() and (max_events is None or shown < max_events):
            if idle is not None and time.monotonic() - last_event > idle:
                break
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            try:  # anyone can produce to the topic: a malformed message is shown as such, not a crash
                headers = headers_of(message.headers())
                if headers.get("ce_type") == CHECKPOINT and not checkpoints:
                    continue
                event = {
                    "id": headers.get("ce_id"),
                    "type": headers.get("ce_type"),
                    "subject": headers.get("ce_subject"),
                    "sequence": int(headers["ce_sequence"]) if "ce_sequence" in headers else None,
                    "position": int(headers.get("ce_position", 0)),
                    "time": headers.get("ce_time"),
                    "keyid": headers.get("ce_ledgerkeyid"),
                    "data": json.loads(message.value() or b"{}"),
                }
            except (ValueError, RecursionError) as exc:
                click.echo(f"skipped a malformed message ({message.partition()}@{message.offset()}): {exc}", err=True)
                consumer.commit(message=message, asynchronous=True)
                continue
            if as_json:
                click.echo(json.dumps(event, separators=(",", ":")))
            else:
                click.echo(
                    f"{event['position']:>10} {event['time'] or '':32} {event['type']:45} {event['subject'] or ''} {json.dumps(event['data'])}"
                )
            shown += 1
            last_event = time.monotonic()
            consumer.commit(message=message, asynchronous=True)
    finally:
        consumer.close()


@main.group()
def projections() -> None:
    """Read-model tasks."""


@projections.command("verify")
def projections_verify() -> None:
    """Recompute every account and transfer from the event store and compare with MongoDB.

    Prints each difference and exits non-zero when there is any. Run it when the
    projector has caught up (the read model's watermark at the event store's head).
    """
    import pymongo

    from commands.application import Ledger, event_store_env
    from projectors.verify import differences
    from queries.generations import Generations
    from queries.readmodel import watermark

    settings = _settings()
    ledger = Ledger(event_store_env(settings))
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(_require(settings, "mongo_url"))
    try:
        db = Generations(client, settings.mongo_db).active_database()
        head, applied = ledger.head_position(), watermark(db)
        found = differences(ledger, db)
    finally:
        client.close()
        ledger.close()
    click.echo(f"event store head {head}, read model applied up to {applied}")
    for line in found:
        click.echo(f"DIFF {line}")
    if found:
        if applied < head:
            click.echo("the read model is behind the event store; some differences may only be lag")
        sys.exit(1)
    click.echo("no differences")


@projections.command("rebuild")
def projections_rebuild() -> None:
    """Replay the event store into a new read-model generation and switch to it.

    Queries keep being answered from the current generation until the switch; the
    projector (if running) pauses for a moment while it happens.
    """
    import pymongo
    from tqdm import tqdm

    from commands.application import Ledger, event_store_env
    from projectors.rebuild import rebuild
    from queries.generations import Generations

    settings = _settings()
    ledger = Ledger(event_store_env(settings))
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(_require(settings, "mongo_url"))
    bar = tqdm(total=ledger.head_position(), unit="event", desc="replaying", disable=None)

    def progress(position: int, head: int) -> None:
        bar.total = max(bar.total or 0, head)
        bar.update(position - bar.n)

    try:
        generation = rebuild(ledger, Generations(client, settings.mongo_db), progress)
    finally:
        bar.close()
        client.close()
        ledger.close()
    click.echo(f"read model generation {generation} is active")


@main.group()
def audit() -> None:
    """Auditors' tools: the event stream and balances recomputed from it."""


def _moment(value: str | None) -> Any:
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{value!r} needs a time zone (e.g. Z)")
    return moment.astimezone(UTC)


@audit.command("export")
@click.option("--after-position", type=int, default=0, show_default=True, help="Start after this position.")
@click.option("--to-position", type=int, default=None, help="Stop at this position (inclusive).")
@click.option("--from-time", default=None, help="RFC 3339; events recorded at or after it.")
@click.option("--to-time", default=None, help="RFC 3339; events recorded at or before it.")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default="-", help="File (default: stdout).")
def audit_export(
    after_position: int, to_position: int | None, from_time: str | None, to_time: str | None, output: str
) -> None:
    """The event stream as JSON lines: one CloudEvents object per event, as on Kafka."""
    from audit.stream import events, write_lines
    from commands.application import Ledger, event_store_env

    settings = _settings()
    _require(settings, "database_url")
    ledger = Ledger(event_store_env(settings))
    try:
        stream = events(
            ledger,
            after_position=after_position,
            to_position=to_position,
            from_time=_moment(from_time),
            to_time=_moment(to_time),
        )
        with click.open_file(output, "w") as out:
            count = write_lines(stream, out)
        click.echo(f"exported {count} events", err=True)
    finally:
        ledger.close()


@audit.command("trial-balance")
@click.option("--as-of-position", type=int, default=None, help="Balances after this position.")
@click.option("--as-of", "as_of", default=None, help="RFC 3339: balances as of this time.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--from-file", type=click.Path(exists=True, dir_okay=False), default=None, help="An export to replay.")
def audit_trial_balance(as_of_position: int | None, as_of: str | None, fmt: str, from_file: str | None) -> None:
    """Every account's posted and pending balances per asset, with totals that net to zero.

    Exits 1 when an asset's totals do not net to zero."""
    import json
    from pathlib import Path

    from audit.stream import events, read_lines
    from audit.trial_balance import trial_balance
    from commands.application import Ledger, event_store_env

    settings = _settings()
    ledger = None
    try:
        if from_file:
            # An export does not say where writes end: cut at exactly this position or time.
            result = trial_balance(read_lines(Path(from_file)), to_position=as_of_position, to_time=_moment(as_of))
        else:
            _require(settings, "database_url")
            ledger = Ledger(event_store_env(settings))
            result = trial_balance(events(ledger, to_position=as_of_position, to_time=_moment(as_of)))
    finally:
        if ledger is not None:
            ledger.close()
    if fmt == "json":
        click.echo(json.dumps(result.report(), indent=2))
    else:
        result.write_csv(sys.stdout)
    unbalanced = {asset: t for asset, t in result.totals().items() if t != (0, 0)}
    if unbalanced:
        click.echo(f"NOT BALANCED: {unbalanced}", err=True)
        sys.exit(1)


@audit.command("seal")
def audit_seal() -> None:
    """Seal now: append a seal over every stream's head, if anything was written since the last."""
    from audit.sealer import SealBroken, Sealer
    from commands.application import Ledger, event_store_env

    settings = _settings()
    ledger = Ledger(event_store_env(settings), actor="service:sealer")
    try:
        position = Sealer(ledger, _require(settings, "database_url")).seal()
    except SealBroken as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        ledger.close()
    click.echo("nothing written since the last seal" if position is None else f"sealed at position {position}")


@main.command()
def sealer() -> None:
    """Seal the event store every LEDGER_SEAL_INTERVAL_SECONDS (when anything was written)."""
    from audit.sealer import Sealer
    from commands.application import Ledger, event_store_env

    settings = _settings()
    stop = _stop_on_signals()
    ledger = Ledger(event_store_env(settings), actor="service:sealer")
    database_url = _require(settings, "database_url")
    try:
        with _operations(settings, "sealer", {"postgres": metrics.postgres_check(database_url)}) as url:
            Sealer(ledger, database_url).run(
                stop, settings.seal_interval_seconds, on_ready=lambda: _ready(settings, url)
            )
    finally:
        ledger.close()


def _expected_seal(_ctx: Any, _param: Any, values: tuple[str, ...]) -> list[tuple[int, str]]:
    seals = []
    for value in values:
        number, sep, root = value.partition(":")
        if not sep or not number.isdigit() or len(root) != 64:
            raise click.BadParameter(f"{value!r} is not SEAL:ROOT (a seal number and its 64-hex-digit root)")
        seals.append((int(number), root.lower()))
    return seals


@audit.command("verify")
@click.option("--as-of-position", type=int, default=None, help="Stop at the end of the write at this position.")
@click.option("--as-of-time", default=None, help="RFC 3339: stop at the last write recorded by then.")
@click.option("--from-file", type=click.Path(exists=True, dir_okay=False), default=None, help="Replay an export.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True), help="Write a JSON report.")
@click.option(
    "--expect-seal",
    multiple=True,
    callback=_expected_seal,
    help="SEAL:ROOT of a seal kept from earlier (a report, the Kafka topic); repeatable.",
)
@click.option("--read-model/--no-read-model", default=True, help="Compare balances with MongoDB (live store only).")
@click.option(
    "--read-model-wait", type=float, default=10.0, show_default=True, help="Seconds to wait for the projector."
)
def audit_verify(
    as_of_position: int | None,
    as_of_time: str | None,
    from_file: str | None,
    report_path: str | None,
    expect_seal: list[tuple[int, str]],
    read_model: bool,
    read_model_wait: float,
) -> None:
    """Replay the event store (or an export) and check it: hash chains and seals, double
    entry, limits, holds resolved once, ids used once; then compare with the read models.

    Reads with a read-only connection (LEDGER_AUDIT_DATABASE_URL if set: a read-only role
    or a replica). Exits 1 when anything is found."""
    import json
    import time
    from pathlib import Path

    from tqdm import tqdm

    from audit.verify import Verifier, file_pages, read_ahead, read_only, report, store_pages_at

    settings = _settings()
    verifier = Verifier(to_position=as_of_position, to_time=_moment(as_of_time))
    started = time.monotonic()
    drift = None
    total = None
    if from_file:
        source = f"file {from_file}"
        path = Path(from_file)
        open_pages: Callable[[str], Iterator[Any]] = lambda shape: read_ahead(file_pages(path, shape))
    else:
        url = settings.audit_database_url or _require(settings, "database_url")
        source = "event store"
        with read_only(url) as conn:
            row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
            total = head = int(row[0]) if row else 0
        open_pages = lambda shape: read_ahead(store_pages_at(url, shape, head=head))
    with tqdm(total=total, unit="ev", unit_scale=True, desc="verify", file=sys.stderr, disable=None) as progress:
        try:
            verifier.run_parallel(open_pages, progress)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    elapsed = time.monotonic() - started
    verifier.check_expected_seals(expect_seal)
    if read_model and not from_file and as_of_position is None and as_of_time is None:
        drift = _read_model_drift(settings, verifier, read_model_wait)
    result = report(verifier, source=source, elapsed=elapsed, drift=drift.findings if drift else None)
    if report_path:
        Path(report_path).write_text(json.dumps(result, indent=2) + "\n")
    _print_verification(result, drift)
    if not result["ok"]:
        sys.exit(1)


def _read_model_drift(settings: Settings, verifier: Any, wait: float) -> Any:
    import pymongo

    from audit.drift import read_model_drift
    from queries.generations import Generations

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(_require(settings, "mongo_url"))
    try:
        return read_model_drift(verifier, Generations(client, settings.mongo_db).active_database(), wait_seconds=wait)
    finally:
        client.close()


def _print_verification(result: dict[str, Any], drift: Any) -> None:
    seals = result["seals"]
    click.echo(
        f"replayed {result['events']} events (positions {result['first_position']} to {result['last_position']}, "
        f"{result['streams']} streams) from the {result['source']} in {result['elapsed_seconds']} s "
        f"({result['events_per_second']} events/s)"
    )
    last = seals["last"]
    if last:
        click.echo(
            f"seals: {seals['checked']} checked; the last, seal {last['seal']} at position {last['position']}, "
            f"has root {last['root']}; {seals['events_after_last_seal']} events after it rest on the hash chains alone"
        )
    else:
        click.echo("seals: none yet; every event rests on the hash chains alone")
    for asset, total in result["totals"].items():
        click.echo(f"{asset}: posted nets to {total['posted']}, pending to {total['pending']}")
    if drift is not None:
        click.echo(f"read model: {drift.compared} accounts compared, {drift.moved_since} moved on since the replay")
    for finding in result["findings"]:
        at = f" at position {finding['position']}" if finding["position"] is not None else ""
        click.echo(f"FINDING {finding['kind']}: {finding['subject']}{at}: {finding['detail']}")
    click.echo("OK: nothing found" if result["ok"] else f"{len(result['findings'])} findings")


if __name__ == "__main__":
    main()
