"""Versioned schema changes, applied with yoyo-migrations (it records what it applied)."""

from __future__ import annotations

from pathlib import Path

from yoyo import get_backend, read_migrations


def _yoyo_url(database_url: str) -> str:
    scheme, rest = database_url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else database_url


def migrate(database_url: str, migrations_dir: Path) -> list[str]:
    """Apply every migration not yet applied; returns the ids it applied (safe to repeat)."""
    backend = get_backend(_yoyo_url(database_url))
    migrations = read_migrations(str(migrations_dir))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def applied(database_url: str, migrations_dir: Path) -> list[str]:
    backend = get_backend(_yoyo_url(database_url))
    migrations = read_migrations(str(migrations_dir))
    return [m.id for m in migrations if backend.is_applied(m)]
