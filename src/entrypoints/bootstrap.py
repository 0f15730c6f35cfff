"""The one place the system's parts are built from settings.

Every `ledger` command (each service's main among them) gets its event store, read
model, Kafka clients and operations endpoint from here, so how a part is configured is
written once; the services take what they need as arguments. The two HTTP apps are
gunicorn's entry points and wire themselves in their own ``get_app()``
(``commands.http``, ``queries.http``), from the same settings.

Imports are inside the functions on purpose: a command pays only for the parts it builds
(`ledger keys list` does not load Kafka, MongoDB and eventsourcing to print a table).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from runtime import metrics, web
from runtime.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer

    from auth.store import KeyStore
    from commands.application import Books
    from contracts.generations import Generations
    from runtime.kafka import TopicWatch

# The services' Kafka consumer groups. Each service assigns itself every partition and
# stores its own offsets, so a group is never joined: it names the service to the broker.
PROJECTOR_GROUP = "ledger-projector"
CHAIN_GROUP = "ledger-chain"


@contextmanager
def event_store(settings: Settings, *, actor: str | None = None, payout_assets: Any = None) -> Iterator[Books]:
    """The ledger application on the event store; ``actor`` stamps the events a service
    writes (``service:chain``) when no API key asked for them."""
    from commands.application import Books
    from commands.event_store import event_store_env

    options: dict[str, Any] = {}
    if actor is not None:
        options["actor"] = actor
    if payout_assets is not None:
        options["payout_assets"] = payout_assets
    books = Books(event_store_env(settings), **options)
    try:
        yield books
    finally:
        books.close()


@contextmanager
def read_model(settings: Settings) -> Iterator[Generations]:
    """The read model's generations (``active_database()`` is the one queries read)."""
    import pymongo

    from contracts.generations import Generations

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(settings.require("mongo_url"))
    try:
        yield Generations(client, settings.mongo_db)
    finally:
        client.close()


def kafka(settings: Settings) -> dict[str, str]:
    """The broker's address and client security, for every Kafka client."""
    return settings.kafka_client()


def kafka_producer(settings: Settings) -> Producer:
    """The relay's producer."""
    from runtime.kafka import producer

    return producer(kafka(settings))


def kafka_consumer(settings: Settings, group: str) -> Consumer:
    """A consumer for a service that assigns itself the partitions (``PROJECTOR_GROUP``,
    ``CHAIN_GROUP``); the service closes it when it stops."""
    from runtime.kafka import consumer

    return consumer(kafka(settings), group)


def topic_watch(settings: Settings) -> TopicWatch:
    """The events topic as the relay, the projector and the chain's intake watch it (and
    create it, with the configured partitions and retention, when it is missing)."""
    from runtime.kafka import TopicWatch

    return TopicWatch(kafka(settings), settings.kafka_topic, settings.kafka_partitions, settings.kafka_retention_ms)


def kafka_check(settings: Settings) -> metrics.Check:
    from runtime.kafka import admin_client

    return metrics.kafka_check(admin_client(kafka(settings)))


def horizon_check(horizon_url: str) -> metrics.Check:
    import requests

    return lambda: requests.get(horizon_url, timeout=2).raise_for_status()


@contextmanager
def operations(settings: Settings, service: str, readiness: dict[str, metrics.Check]) -> Iterator[str | None]:
    """A worker service's /metrics (needs a key with the metrics scope), /readyz and
    /healthz on LEDGER_METRICS_PORT; yields their URL, or None when the port is unset."""
    if settings.metrics_port is None:
        yield None
        return
    from auth.http import Authenticate

    with key_store(settings) as keys:
        app = web.create_base_app(Authenticate(keys), api=service)
        app.add_route("/metrics", metrics.MetricsResource())
        app.add_route("/readyz", metrics.Readiness(readiness))
        server, url = metrics.serve(app, settings.host, settings.metrics_port)
        try:
            yield url
        finally:
            server.shutdown()


@contextmanager
def key_store(settings: Settings) -> Iterator[KeyStore]:
    from auth.store import KeyStore

    store = KeyStore(settings.require("database_url"), pool_size=1)
    try:
        yield store
    finally:
        store.close()
