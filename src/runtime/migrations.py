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


WRITER_ROLE = "ledger_writer"  # appends events through ledger_append only (migration 0009)
READER_ROLE = "ledger_reader"  # reads; for the query API and auditors


def enable_logins(owner_url: str, passwords: dict[str, str]) -> None:
    """Let the ledger's roles log in with these passwords (set again each time: rotating
    one is running this with a new password)."""
    import psycopg
    from psycopg import sql

    unknown = set(passwords) - {WRITER_ROLE, READER_ROLE}
    if unknown:
        raise ValueError(f"not a ledger role: {', '.join(sorted(unknown))}")
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for role, password in passwords.items():
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
