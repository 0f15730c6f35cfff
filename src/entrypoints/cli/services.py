"""The long-running services' mains (`ledger relay`, `project`, `chain`, ...), as `ledger up`
or an operator's process manager starts them. Each builds its parts through ``bootstrap``
and runs until stopped."""

from __future__ import annotations

import sys
from contextlib import ExitStack

import click

from entrypoints import bootstrap
from entrypoints.cli.common import NothingDone, load_settings, moment, ready, stop_on_signals
from runtime import metrics
from runtime.settings import SettingsError


@click.command()
def relay() -> None:
    """Publish the event store's notification log to Kafka."""
    from projectors.relay import Relay, RelayState

    settings = load_settings()
    database_url = settings.require("database_url")
    stop = stop_on_signals()
    readiness = {"postgres": metrics.postgres_check(database_url), "kafka": bootstrap.kafka_check(settings)}
    state = RelayState(database_url, settings.kafka_topic)
    try:
        with bootstrap.event_store(settings) as books, bootstrap.operations(settings, "relay", readiness) as url:
            Relay(
                books,
                state,
                database_url,
                bootstrap.kafka_producer(settings),
                bootstrap.topic_watch(settings),
            ).run(stop, on_ready=lambda: ready(settings, url))
    finally:
        state.close()


@click.command()
def expire() -> None:
    """Void pending transfers whose timeout has passed."""
    from commands.expirer import Expirer

    settings = load_settings()
    database_url = settings.require("database_url")
    stop = stop_on_signals()
    with bootstrap.event_store(settings, actor="service:expirer") as books:
        expirer = Expirer(books, database_url)
        try:
            with bootstrap.operations(settings, "expirer", {"postgres": metrics.postgres_check(database_url)}) as url:
                expirer.run(stop, on_ready=lambda: ready(settings, url))
        finally:
            expirer.close()


@click.command()
def project() -> None:
    """Apply Kafka events to the MongoDB read models."""
    from projectors.projector import Projector
    from projectors.store_head import StoreHead

    settings = load_settings()
    stop = stop_on_signals()
    readiness = {
        "kafka": bootstrap.kafka_check(settings),
        "mongodb": metrics.mongodb_check(settings.require("mongo_url")),
        "postgres": metrics.postgres_check(settings.require("database_url")),
    }
    store_head = StoreHead(settings.require("database_url"))
    try:
        with (
            bootstrap.read_model(settings) as generations,
            bootstrap.operations(settings, "projector", readiness) as url,
        ):
            Projector(
                generations.active_database(),
                bootstrap.kafka_consumer(settings, bootstrap.PROJECTOR_GROUP),
                bootstrap.topic_watch(settings),
                store_head=store_head,
                generations=generations,
            ).run(stop, on_ready=lambda: ready(settings, url))
    finally:
        store_head.close()


@click.command()
def sealer() -> None:
    """Seal the event store every LEDGER_SEAL_INTERVAL_SECONDS (when anything was written)."""
    from audit.sealer import Sealer

    settings = load_settings()
    database_url = settings.require("database_url")
    stop = stop_on_signals()
    with (
        bootstrap.event_store(settings, actor="service:sealer") as books,
        bootstrap.operations(settings, "sealer", {"postgres": metrics.postgres_check(database_url)}) as url,
    ):
        Sealer(books, database_url).run(stop, settings.seal_interval_seconds, on_ready=lambda: ready(settings, url))


@click.group(invoke_without_command=True)
@click.pass_context
def chain(ctx: click.Context) -> None:
    """Pay payouts out on Stellar (and report each outcome to the ledger).

    `ledger chain reconcile` compares the chain with the books instead."""
    if ctx.invoked_subcommand is not None:
        return
    from chain.config import chain_settings, prepare_simulator
    from chain.kill_switch import KillSwitch
    from chain.runs import RunStore
    from chain.store import ChainStore
    from chain.worker import ChainWorker

    settings = load_settings()
    database_url = settings.require("database_url")
    if settings.stellar_secrets_file is None:
        raise click.ClickException("LEDGER_STELLAR_SECRETS_FILE is not set (see README: Stellar)")
    try:
        config = chain_settings(settings)
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"Stellar settings: {exc}") from None
    try:
        kill = KillSwitch(settings.chain_kill_at)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    prepare_simulator(config)
    stop = stop_on_signals()
    readiness = {
        "postgres": metrics.postgres_check(database_url),
        "kafka": bootstrap.kafka_check(settings),
        "horizon": bootstrap.horizon_check(config.horizon_url),
    }
    with (
        bootstrap.event_store(settings, payout_assets=settings.payout_assets, actor="service:chain") as books,
        bootstrap.operations(settings, "chain", readiness) as url,
    ):
        ChainWorker(
            config,
            ChainStore(database_url),
            RunStore(database_url),
            books,
            bootstrap.kafka_consumer(settings, bootstrap.CHAIN_GROUP),
            bootstrap.topic_watch(settings),
            kill,
        ).run(stop, on_ready=lambda: ready(settings, url))


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

    from chain.config import chain_settings
    from chain.reconcile import UNREADABLE, Reconciler, reconciler_horizon, run_periodically
    from chain.store import ChainStore

    since_moment = moment(since)
    try:
        settings = load_settings()
        database_url = settings.require("database_url")
        if settings.stellar_secrets_file is None:
            raise SettingsError("LEDGER_STELLAR_SECRETS_FILE is not set (see README: Stellar payouts)")
        config = chain_settings(settings)
    except SettingsError as exc:
        raise NothingDone(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise NothingDone(f"settings: {exc}") from None
    with ExitStack() as resources:
        try:
            books = resources.enter_context(bootstrap.event_store(settings, actor="service:reconcile"))
        except UNREADABLE as exc:
            raise NothingDone(f"could not read the books: {type(exc).__name__}: {exc}") from None
        store = ChainStore(database_url)
        resources.callback(store.close)
        reconciler = Reconciler(config, store, books, reconciler_horizon(config.horizon_url))
        if every is None:
            try:
                report = reconciler.run(since_moment)
            except UNREADABLE as exc:
                raise NothingDone(f"could not read the chain or the books: {type(exc).__name__}: {exc}") from None
            click.echo(json.dumps(report.as_json(), indent=2))
            sys.exit(1 if report.differences else 0)
        stop = stop_on_signals()
        readiness = {
            "postgres": metrics.postgres_check(database_url),
            "horizon": bootstrap.horizon_check(config.horizon_url),
        }
        with bootstrap.operations(settings, "reconcile", readiness) as url:
            ready(settings, url)
            run_periodically(reconciler, since_moment, every, stop)


COMMANDS = (relay, expire, project, sealer, chain)
