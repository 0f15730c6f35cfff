"""``ledger up``: the whole system as supervised child processes.

Start order: servers (embedded unless a URL is set), migrations, then the two HTTP APIs,
the relay, the projector and the expirer, each awaited until healthy. A child that dies is
reported and restarted: a server at once (the embedded broker comes back empty; the
relay and projector notice and start the topic again), a service with back-off. A server
that cannot be restarted stops everything. Stopping sends each child its stop signal and
SIGKILL after a grace period, in reverse order, and waits for every one of them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from devstack.embedded import EmbeddedHorizon, EmbeddedKafka, EmbeddedMongo, EmbeddedPostgres, Server
from devstack.processes import ManagedProcess, ProcessExited, wait_until
from devstack.stack_services import EMBEDDED_KAFKA_PARTITIONS, ROLES, WORKERS, Service, http_ok
from runtime.files import write_private
from runtime.migrations import READER_ROLE, WRITER_ROLE, enable_logins, migrate
from runtime.settings import STACK_SECRETS_FILE, STATE_FILE, Settings, env_name, redact

log = logging.getLogger(__name__)


ADMIN_KEY_FILE = "admin.key"


class AlreadyRunning(RuntimeError):
    pass


class Stack:
    def __init__(self, settings: Settings, *, fresh: bool = False, out: IO[str] = sys.stdout) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.fresh = fresh
        self.out = out
        self.stop_requested = threading.Event()
        self.servers: list[Server] = []
        self.services: list[Service] = []
        self.urls: dict[str, str] = {}
        self.reader_url = ""
        self.stellar_secrets: Path | None = None
        self._lock_fd: int | None = None

    def request_stop(self, *_: object) -> None:
        self.stop_requested.set()

    def run(self) -> int:
        """Start everything, supervise until asked to stop; returns the exit code."""
        try:
            self._prepare_data_dir()
            urls = self.urls = self._start_servers()
            migrate(urls["migration_database_url"], self.settings.migrations_dir)
            self._database_roles(urls)
            token = self._first_admin_key(urls["database_url"])
            self._start_services(urls)
            self._write_state(urls)
            self._announce(urls, token)
            return self._supervise()
        finally:
            self.shutdown()

    # Start-up -----------------------------------------------------------------

    def _prepare_data_dir(self) -> None:
        """Lock the data directory (one `ledger up` per directory), then wipe it if asked.

        The lock is on the directory itself, so `--fresh` cannot delete it from under
        a running instance.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise AlreadyRunning(f"another `ledger up` is using {self.data_dir}") from None
        if self.fresh:
            for entry in self.data_dir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        (self.data_dir / "run").mkdir(exist_ok=True)

    def _start_servers(self) -> dict[str, str]:
        s = self.settings
        urls = {
            "database_url": s.database_url,
            "audit_database_url": s.audit_database_url,
            "migration_database_url": s.migration_database_url,
            "kafka_bootstrap": s.kafka_bootstrap,
            "mongo_url": s.mongo_url,
            "horizon_url": s.horizon_url,
        }
        embedded = {
            "database_url": lambda: EmbeddedPostgres(self.data_dir, s.embedded_postgres_port, s.host),
            "kafka_bootstrap": lambda: EmbeddedKafka(self.data_dir, s.embedded_kafka_port, s.host),
            "mongo_url": lambda: EmbeddedMongo(self.data_dir, s.embedded_mongo_port, s.host),
            "horizon_url": lambda: EmbeddedHorizon(self.data_dir, s.embedded_horizon_port, s.host),
        }
        for name, make in embedded.items():
            if urls[name]:
                continue
            self._check_stop()
            server = make()
            self.servers.append(server)
            server.start(interrupt=self._check_stop)
            urls[name] = server.url
            log.info("embedded server ready", extra={"server": server.process.name, "url": redact(server.url)})
        urls["migration_database_url"] = urls["migration_database_url"] or urls["database_url"]
        urls["audit_database_url"] = urls["audit_database_url"] or urls["database_url"]
        self.reader_url = str(urls["audit_database_url"])
        return {k: str(v) for k, v in urls.items()}

    def _database_roles(self, urls: dict[str, str]) -> None:
        """On the embedded PostgreSQL, the services log in as the ledger's roles (migration
        0009), not as the superuser: the writer for the command side, the reader for the
        query API, the projector and audits. An external database's URLs are used as given."""
        server = next((srv for srv in self.servers if isinstance(srv, EmbeddedPostgres)), None)
        if server is None:
            return
        enable_logins(urls["migration_database_url"], {role: server.passwords.ensure(role) for role in ROLES})
        urls["database_url"] = server.url_for(WRITER_ROLE)
        urls["audit_database_url"] = self.reader_url = server.url_for(READER_ROLE)

    def _first_admin_key(self, database_url: str) -> str | None:
        """On the first start with this data directory, an admin key: its bearer token is
        printed once and kept in ``admin.key`` (0600) for the README's examples and the CLI."""
        from auth.store import KeyStore

        path = self.data_dir / ADMIN_KEY_FILE
        store = KeyStore(database_url, pool_size=1)
        try:
            if path.exists():
                kept = store.get(path.read_text().strip().partition(".")[0])
                if kept is not None:
                    return None  # (revoked or not: revoking it is the operator's choice)
                log.warning("the admin key in the data directory is not in this database; making a new one")
            key, secret = store.create("ledger up (first start)", ["admin"])
        finally:
            store.close()
        token = f"{key.key_id}.{secret}"
        write_private(path, token + "\n")
        return token

    def _start_services(self, urls: dict[str, str]) -> None:
        s = self.settings
        env = dict(os.environ)
        # The owner's URL stays with the supervisor: no service needs to change the schema.
        env.update({env_name(k): v for k, v in urls.items() if k != "migration_database_url"})
        env[env_name("data_dir")] = str(self.data_dir)
        # The workers are single processes with metrics of their own (runtime.metrics); each
        # gunicorn master makes its own multi-process directory.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if not s.kafka_bootstrap and not os.environ.get(env_name("kafka_partitions")):
            env[env_name("kafka_partitions")] = str(EMBEDDED_KAFKA_PARTITIONS)
        python = sys.executable
        run_dir = self.data_dir / "run"

        # Services that only read the event store (and record nonces) log in as the reader.
        reader_env = dict(env, **{env_name("database_url"): self.reader_url})

        def http(name: str, app: str, port: int, *, reads_only: bool = False, **web: int) -> Service:
            argv = [python, "-m", "gunicorn", "-c", "python:runtime.gunicorn_conf", "--bind", f"{s.host}:{port}", app]
            url = f"http://{s.host}:{port}/healthz"
            child_env = dict(reader_env if reads_only else env, **{env_name(k): str(v) for k, v in web.items()})
            return Service(ManagedProcess(name, argv, env=child_env, grace_seconds=15), lambda: http_ok(url))

        def worker(name: str, *subcommand: str, reads_only: bool = False) -> Service:
            ready_file = run_dir / f"{name}.ready"
            port = s.metrics_base_port + WORKERS.index(name) if s.metrics_base_port else 0
            child_env = dict(
                reader_env if reads_only else env,
                **{env_name("ready_file"): str(ready_file), env_name("metrics_port"): str(port)},
            )
            return Service(
                ManagedProcess(name, [python, "-m", "entrypoints.cli", *subcommand], env=child_env, grace_seconds=15),
                ready_file.exists,
            )

        self.services = [
            http(
                "command-api",
                "commands.http:get_app()",
                s.command_port,
                web_workers=s.command_workers,
                web_threads=s.command_threads,
            ),
            http("query-api", "queries.http:get_app()", s.query_port, reads_only=True),
            worker("relay", "relay"),
            worker("projector", "project", reads_only=True),
            worker("expirer", "expire"),
            worker("sealer", "sealer"),
        ]
        secrets = self.stellar_secrets = self._stellar_secrets(embedded_horizon=not s.horizon_url)
        if secrets is None:
            log.warning("no LEDGER_STELLAR_SECRETS_FILE for a real Horizon: payouts stay pending (no chain worker)")
        else:
            env[env_name("stellar_secrets_file")] = str(secrets)
            self.services.append(worker("chain", "chain"))
            # Beside it, the chain compared with the books; it only reads, so as the reader.
            reconcile = worker("reconcile", "chain", "reconcile", "--every", str(s.reconcile_seconds), reads_only=True)
            reconcile.process.env[env_name("stellar_secrets_file")] = str(secrets)
            self.services.append(reconcile)
        # The APIs first, until they answer: the workers then serve their metrics on ports
        # the kernel picks (LEDGER_METRICS_BASE_PORT unset), which must not be ones the APIs
        # were given and have not bound yet (seen: the command API's port taken that way).
        apis = [service for service in self.services if service.process.name.endswith("-api")]
        workers = [service for service in self.services if service not in apis]
        for batch in (apis, workers):
            for service in batch:
                self._check_stop()
                self._start_service(service)
            for service in batch:
                wait_until(lambda svc=service: self._healthy(svc), 90, service.process.name)
                log.info("service ready", extra={"service": service.process.name, "pid": service.process.pid})

    def _stellar_secrets(self, *, embedded_horizon: bool) -> Path | None:
        """The chain worker's keys: the configured file, or (on the simulator only) keys
        made once for this data directory."""
        if self.settings.stellar_secrets_file is not None:
            return self.settings.stellar_secrets_file.resolve()
        if not embedded_horizon:
            return None
        from chain.stellar import Keys

        path = self.data_dir / "stellar-keys.json"
        if not path.exists():
            Keys.generate(channels=4).save(path)
        return path

    def _start_service(self, service: Service) -> None:
        ready_file = service.process.env.get(env_name("ready_file"))
        if ready_file:
            Path(ready_file).unlink(missing_ok=True)
        service.process.start()
        service.started_at = time.monotonic()

    def _healthy(self, service: Service) -> bool:
        self._check_stop()
        code = service.process.poll()
        if code is not None:
            raise ProcessExited(f"{service.process.name} exited with code {code} while starting (see its output above)")
        return bool(service.ready())  # type: ignore[operator]

    def _check_stop(self) -> None:
        if self.stop_requested.is_set():
            raise KeyboardInterrupt

    def operations_urls(self) -> dict[str, str]:
        """Each worker service's /metrics and /readyz, as its ready file says."""
        found = {}
        for service in self.services:
            ready_file = service.process.env.get(env_name("ready_file"))
            url = Path(ready_file).read_text().strip() if ready_file and Path(ready_file).exists() else ""
            if url:
                found[f"{service.process.name}_metrics"] = url
        return found

    def _write_state(self, urls: dict[str, str]) -> None:
        """What runs where, for tests, benchmarks and the ``ledger`` CLI run beside the stack
        (``runtime.settings.running_stack``): never a password (those go to a 0600 file)."""
        s = self.settings
        published = dict(urls)
        if s.stellar_secrets_file is not None or self.stellar_secrets is not None:
            published["stellar_secrets_file"] = str(self.stellar_secrets or s.stellar_secrets_file)
        published |= {"mongo_db": s.mongo_db, "kafka_topic": s.kafka_topic}
        with_passwords = {k: v for k, v in published.items() if v and _password_of(v)}
        write_private(self.data_dir / STACK_SECRETS_FILE, json.dumps(with_passwords, indent=2) + "\n")
        bare = {k: redact(v, mask=None) for k, v in published.items() if v}
        state = {
            "supervisor": os.getpid(),
            "urls": bare
            | {
                "command_api": f"http://{s.host}:{s.command_port}",
                "query_api": f"http://{s.host}:{s.query_port}",
            }
            | self.operations_urls(),
            "settings": bare,
            "admin_key_file": str(self.data_dir / ADMIN_KEY_FILE),
            "children": {p.name: p.pid for p in self._processes()},
        }
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def _announce(self, urls: dict[str, str], token: str | None = None) -> None:
        s = self.settings
        key_file = self.data_dir / ADMIN_KEY_FILE
        lines = [
            "ledger is up",
            f"  command API  http://{s.host}:{s.command_port}",
            f"  query API    http://{s.host}:{s.query_port}",
            f"  postgres     {redact(urls['database_url'])}",
            f"  kafka        {redact(urls['kafka_bootstrap'])}",
            f"  mongodb      {redact(urls['mongo_url'])}",
            f"  horizon      {redact(urls['horizon_url'])}" + ("  (SIMULATOR)" if not s.horizon_url else ""),
            f"  data         {self.data_dir}",
            "  metrics      GET /metrics of each API and worker (a key with the metrics scope; URLs: run/state.json)",
            f"  admin key    {token}  (shown once; kept in {key_file})" if token else f"  admin key    in {key_file}",
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), file=self.out, flush=True)

    # Supervision ----------------------------------------------------------------

    def _supervise(self) -> int:
        while not self.stop_requested.wait(0.2):
            changed = False
            for server in self.servers:
                code = server.process.poll()
                if code is None:
                    continue
                log.error(
                    "server died; restarting it",
                    extra={"server": server.process.name, "exit_code": code, "log": str(server.process.log_file)},
                )
                server.process.stop()  # reap it
                try:
                    server.start(interrupt=self._check_stop)
                except (ProcessExited, TimeoutError):
                    log.exception("server could not be restarted; stopping everything")
                    return 1
                changed = True
            for service in self.services:
                changed |= self._tend(service)
            if changed:
                self._write_state_quietly()
        return 0

    def _tend(self, service: Service) -> bool:
        process = service.process
        if process.popen is not None and process.poll() is None:
            if time.monotonic() - service.started_at > 60:
                service.restarts = 0
            return False
        now = time.monotonic()
        if process.popen is not None:
            code = process.poll()
            process.stop()  # reap and close its log
            process.popen = None
            delay = min(2.0**service.restarts, 30.0)
            service.next_start = now + delay
            service.restarts += 1
            log.error(
                "service died; restarting", extra={"service": process.name, "exit_code": code, "in_seconds": delay}
            )
            return False
        if now >= service.next_start:
            self._start_service(service)
            return True
        return False

    def _write_state_quietly(self) -> None:
        try:
            self._write_state(self.urls)
        except OSError:
            log.exception("could not update the state file")

    def _processes(self) -> list[ManagedProcess]:
        return [s.process for s in self.servers] + [s.process for s in self.services]

    # Shutdown -------------------------------------------------------------------

    def shutdown(self) -> None:
        for service in reversed(self.services):
            service.process.stop()
        for server in reversed(self.servers):
            server.stop()
        self.services, self.servers = [], []
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        (self.data_dir / STACK_SECRETS_FILE).unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _password_of(value: str) -> str | None:
    return urlsplit(value).password if "://" in value else None


def install_signal_handlers(stack: Stack) -> None:
    signal.signal(signal.SIGINT, stack.request_stop)
    signal.signal(signal.SIGTERM, stack.request_stop)
