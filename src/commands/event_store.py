"""Which event store a ``Books`` runs on: eventsourcing's configuration for PostgreSQL,
derived from our settings, or for the in-memory store of the handlers' unit tests.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from runtime.settings import Settings

MEMORY_STORE = {"PERSISTENCE_MODULE": "commands.memory_store:MemoryFactory"}


def event_store_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's configuration, derived from our settings."""
    url = urlsplit(settings.require("database_url"))
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_POOL_SIZE": str(settings.db_pool_size),
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "no",
        # Tables come from migrations (`ledger db migrate`), never from the library.
        "CREATE_TABLE": "no",
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "APPLICATION_RECORDER_TOPIC": "commands.recorder:LedgerRecorder",
    }
