"""Shared fixtures: real servers, started by the project's own code, stopped by PID.

The embedded PostgreSQL, Kafka-protocol broker and MongoDB-protocol server are started
once per test session on free ports in a temporary directory. A server that cannot
start fails the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import falcon
import falcon.testing
import psycopg
import pymongo
import pytest
from confluent_kafka import Consumer, Producer
from psycopg import sql

from auth.store import KeyStore
from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount
from devstack.embedded import EmbeddedKafka, EmbeddedMongo, EmbeddedPostgres
from runtime import kafka
from runtime.migrations import READER_ROLE, WRITER_ROLE, enable_logins, migrate
from runtime.settings import PROJECT_ROOT, Settings


class Clock:
    """A clock the test moves by hand (``clock.now += timedelta(...)``)."""

    def __init__(self, now: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run_ledger(
    *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `ledger` CLI as a user would, with ``env`` on top of this process's (whose
    own LEDGER_* variables are left out: the test says what the command sees).

    Without ``cwd`` it runs in an empty folder: in the checkout it would find (and use)
    a stack a developer happens to be running there with `make run`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    inherited["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="ledger-cli-") as empty:
        return subprocess.run(
            [sys.executable, "-m", "entrypoints.cli", *args],
            env=inherited | env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd or empty,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def funded(books: Books, amount: str = "100.00") -> tuple[str, str]:
    """Two new USD/2 accounts, the first holding ``amount``."""
    a, b = unique("A"), unique("B")
    books.open_account(OpenAccount(a, "USD/2"))
    books.open_account(OpenAccount(b, "USD/2"))
    books.deposit(Deposit(unique("d"), a, amount))
    return a, b


@dataclass(frozen=True)
class Urls:
    database_url: str  # the schema's owner (the superuser): tests that tamper or inspect use it
    kafka_bootstrap: str
    mongo_url: str
    writer_url: str  # the ledger's writer role, as the services log in (migration 0009)
    reader_url: str

    def settings(self, **overrides: Any) -> Settings:
        """The services' settings: the ledger writes as its writer role, never as the owner."""
        urls = {
            "database_url": self.writer_url,
            "audit_database_url": self.reader_url,
            "kafka_bootstrap": self.kafka_bootstrap,
            "mongo_url": self.mongo_url,
        }
        return Settings(**(urls | overrides))

    def producer(self) -> Producer:
        """A producer as the relay's (``runtime.kafka.producer``), on the test broker."""
        return kafka.producer(self.kafka_bootstrap)

    def consumer(self) -> Consumer:
        """A consumer as the projector's and the chain intake's, in a group of its own."""
        return kafka.consumer(self.kafka_bootstrap, unique("g"))

    def topic_watch(self, topic: str, partitions: int) -> kafka.TopicWatch:
        """``topic``'s watch on the test broker (created with ``partitions`` when missing)."""
        return kafka.TopicWatch(self.kafka_bootstrap, topic, partitions)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Urls]:
    data_dir = tmp_path_factory.mktemp("servers")
    started = []
    try:
        for server in (
            EmbeddedPostgres(data_dir, free_port()),
            EmbeddedKafka(data_dir, free_port()),
            EmbeddedMongo(data_dir, free_port()),
        ):
            started.append(server)
            server.start()
        postgres = started[0]
        assert isinstance(postgres, EmbeddedPostgres)
        migrate(postgres.url, PROJECT_ROOT / "migrations")
        enable_logins(postgres.url, {role: postgres.passwords.ensure(role) for role in (WRITER_ROLE, READER_ROLE)})
        yield Urls(
            postgres.url,
            started[1].url,
            started[2].url,
            postgres.url_for(WRITER_ROLE),
            postgres.url_for(READER_ROLE),
        )
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
def books(servers: Urls) -> Iterator[Books]:
    app = Books(event_store_env(servers.settings()))
    yield app
    app.close()


@pytest.fixture(scope="session")
def keys(servers: Urls) -> Iterator[KeyStore]:
    store = KeyStore(servers.writer_url)
    yield store
    store.close()


@pytest.fixture(scope="session")
def admin_token(keys: KeyStore) -> str:
    key, secret = keys.create("tests: admin", ["admin"])
    return f"{key.key_id}.{secret}"


def api_client(app: falcon.App, token: str) -> falcon.testing.TestClient:
    """falcon's test client, sending ``token`` as a bearer key on every request."""
    return falcon.testing.TestClient(app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def event_count(servers: Urls) -> Any:
    """A function returning how many events the store holds, to prove nothing was written."""

    def count() -> int:
        with psycopg.connect(servers.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
            assert row is not None
            return int(row[0])

    return count


@pytest.fixture
def mongo_db(servers: Urls) -> Iterator[Any]:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(servers.mongo_url)
    yield client[unique("t").replace("-", "_")]
    client.close()


def project_root() -> Path:
    return PROJECT_ROOT


def benchmark_module(name: str) -> ModuleType:
    """A module of ``benchmarks/``: they are run as scripts and import each other by plain
    name, so their folder goes on the path (once) for tests of their parts."""
    folder = str(PROJECT_ROOT / "benchmarks")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(name)


def store_beside(servers: Urls) -> Urls:
    """A new event store database on the shared server, migrated."""
    name = unique("store").replace("-", "_")
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def on(url: str) -> str:
        return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))

    migrate(on(servers.database_url), PROJECT_ROOT / "migrations")
    owner, writer, reader = (on(url) for url in (servers.database_url, servers.writer_url, servers.reader_url))
    return Urls(owner, servers.kafka_bootstrap, servers.mongo_url, writer, reader)
