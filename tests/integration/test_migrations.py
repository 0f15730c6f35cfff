"""Migrations create the event store; the library is never allowed to."""

import psycopg
import pytest

from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import OpenAccount
from runtime.migrations import applied, migrate
from runtime.settings import PROJECT_ROOT, Settings
from tests.conftest import Urls, unique


def test_migrating_again_applies_nothing(servers: Urls) -> None:
    migrations = PROJECT_ROOT / "migrations"
    assert migrate(servers.database_url, migrations) == []
    assert applied(servers.database_url, migrations) == sorted(p.stem for p in migrations.glob("*.sql"))


def test_the_event_store_tables_come_from_migrations(servers: Urls) -> None:
    with psycopg.connect(servers.database_url) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"ledger_events", "relay_state"} <= tables
    assert "_yoyo_migration" in tables


def test_without_migrations_the_library_creates_nothing(servers: Urls) -> None:
    name = unique("bare").replace("-", "_")
    admin_url = servers.database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = servers.database_url.rsplit("/", 1)[0] + "/" + name
    books = Books(event_store_env(Settings(database_url=url)))
    try:
        with pytest.raises(Exception, match="ledger_events|stored_event_uuid"):
            books.open_account(OpenAccount("A", "USD/2"))
    finally:
        books.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
