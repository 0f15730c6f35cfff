"""The secret files ``compose.yaml`` mounts: made once, random, private (0600).

compose runs PostgreSQL with three roles (the owner that migrates, the ledger's writer,
a reader), Kafka with SASL/SCRAM and MongoDB with authentication; each service is given
only the files it needs (``/run/secrets/NAME``, read through ``LEDGER_*_FILE``).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from runtime.files import write_private

PASSWORDS = ("pg_owner_password", "pg_writer_password", "pg_reader_password", "kafka_password", "mongo_password")


def write_compose_secrets(directory: Path) -> list[Path]:
    """Make the passwords that do not exist yet, and the URLs built from them; returns
    the files written (existing passwords are kept, so running it again changes nothing)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    values: dict[str, str] = {}
    for name in PASSWORDS:
        path = directory / name
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24))
            written.append(path)
        values[name] = path.read_text().strip()
    derived = {
        "owner_database_url": f"postgresql://ledger_owner:{values['pg_owner_password']}@postgres:5432/ledger",
        "writer_database_url": f"postgresql://ledger_writer:{values['pg_writer_password']}@postgres:5432/ledger",
        "reader_database_url": f"postgresql://ledger_reader:{values['pg_reader_password']}@postgres:5432/ledger",
        "mongo_url": f"mongodb://ledger:{values['mongo_password']}@mongo:27017/?authSource=admin",
    }
    for name, text in derived.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            write_private(path, text)
            written.append(path)
    return written
