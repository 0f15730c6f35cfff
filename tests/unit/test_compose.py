"""compose.yaml cannot run here (no Docker engine); check that it parses, is wired with
the same settings names as the code, and that every server in it asks for credentials
that `ledger compose-secrets` makes."""

import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from runtime.compose_secrets import write_compose_secrets
from runtime.settings import PROJECT_ROOT, Settings, env_names


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text()))


LEDGER_SERVICES = ("migrate", "command-api", "query-api", "relay", "projector", "expirer", "sealer", "chain")


def test_compose_has_the_official_servers_and_our_services() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "process.roles=broker,controller" in services["kafka"]["command"][0]  # KRaft, no ZooKeeper
    assert services["mongo"]["image"].startswith("mongo:")
    for name in LEDGER_SERVICES:
        assert services[name]["build"] == "."


def test_every_ledger_variable_in_compose_is_a_setting() -> None:
    used = set(re.findall(r"\bLEDGER_[A-Z_]+\b", (PROJECT_ROOT / "compose.yaml").read_text()))
    assert {"LEDGER_DATABASE_URL_FILE", "LEDGER_KAFKA_BOOTSTRAP", "LEDGER_MONGO_URL_FILE"} <= used
    assert used <= env_names()


def secrets_as_files(environment: dict[str, Any], secrets_dir: Path) -> dict[str, str]:
    """The service's environment as the container sees it, /run/secrets mapped to ``secrets_dir``."""
    return {k: str(v).replace("/run/secrets/", f"{secrets_dir}/") for k, v in environment.items()}


def test_every_server_asks_for_credentials(tmp_path: Path) -> None:
    spec = compose()
    services = spec["services"]
    secret_files = {name: Path(item["file"]).name for name, item in spec["secrets"].items()}
    write_compose_secrets(tmp_path)
    made = {p.name for p in tmp_path.iterdir()}
    assert set(secret_files.values()) - {"stellar-keys.json"} <= made
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.iterdir())
    # PostgreSQL: an owner with a password; the services as writer or reader, never the owner
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_owner_password"
    assert "scram-sha-256" in services["postgres"]["environment"]["POSTGRES_INITDB_ARGS"]
    roles = {}
    for name in LEDGER_SERVICES:
        env = secrets_as_files(services[name]["environment"], tmp_path)
        for setting in [k for k in env if k.endswith("_FILE")]:
            secret = env[setting].rsplit("/", 1)[1]
            assert secret in services[name]["secrets"], (name, secret)  # mounted where it is read
        settings = Settings.from_env(env)
        url = settings.migration_database_url if name == "migrate" else settings.database_url
        assert url is not None
        roles[name] = url.split("://", 1)[1].split(":", 1)[0]
    assert roles == {
        "migrate": "ledger_owner",
        "command-api": "ledger_writer",
        "relay": "ledger_writer",
        "expirer": "ledger_writer",
        "sealer": "ledger_writer",
        "chain": "ledger_writer",
        "query-api": "ledger_reader",
        "projector": "ledger_reader",
    }
    assert "--writer-password-file=/run/secrets/pg_writer_password" in services["migrate"]["command"]
    # Kafka: SASL/SCRAM for the broker and every client
    kafka_script = services["kafka"]["command"][0]
    assert "listeners=SASL_PLAINTEXT://:9092" in kafka_script and "--add-scram" in kafka_script
    relay = Settings.from_env(secrets_as_files(services["relay"]["environment"], tmp_path)).kafka_client()
    assert relay["security.protocol"] == "SASL_PLAINTEXT" and relay["sasl.mechanism"] == "SCRAM-SHA-256"
    assert relay["sasl.password"] == (tmp_path / "kafka_password").read_text()
    # MongoDB: a root user with a password, and the services' URL carries it
    assert services["mongo"]["environment"]["MONGO_INITDB_ROOT_PASSWORD_FILE"] == "/run/secrets/mongo_password"
    mongo_url = Settings.from_env(secrets_as_files(services["relay"]["environment"], tmp_path)).mongo_url
    assert mongo_url and (tmp_path / "mongo_password").read_text() in mongo_url
    # and none of it is shown
    assert (tmp_path / "kafka_password").read_text() not in repr(
        Settings.from_env(secrets_as_files(services["relay"]["environment"], tmp_path))
    )


def test_compose_secrets_keeps_what_it_made(tmp_path: Path) -> None:
    first = write_compose_secrets(tmp_path)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert len(first) == len(before) and write_compose_secrets(tmp_path) == []
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before


def test_the_dockerfile_copies_what_the_services_need() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for needed in ("COPY src", "COPY migrations", "LEDGER_MIGRATIONS_DIR"):
        assert needed in dockerfile
    assert Path(PROJECT_ROOT / "migrations").is_dir()


def test_the_image_leaves_the_development_stack_out() -> None:
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert "src/devstack" in ignored and "secrets" in ignored
    for name in LEDGER_SERVICES:
        command = compose()["services"][name].get("command") or []
        assert command[:2] not in (["ledger", "up"], ["ledger", "horizon-sim"]), name


def test_every_command_but_the_development_stacks_runs_without_it() -> None:
    """The image leaves ``src/devstack`` out: the CLI must load without it, and only
    `ledger up` and `ledger horizon-sim` may need it (when they run)."""
    blocked = "import sys; sys.modules['devstack'] = None; from entrypoints.cli import main; main()"
    for args in (["--help"], ["relay", "--help"], ["audit", "verify", "--help"], ["up", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", blocked, *args], check=False, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "Usage: " in done.stdout
    done = subprocess.run(
        [sys.executable, "-c", blocked, "horizon-sim", "--port", "1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "devstack" in done.stderr  # the block is real: this one needs it
