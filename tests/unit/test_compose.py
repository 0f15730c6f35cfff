"""compose.yaml cannot run here (no Docker engine); check that it parses and is wired
with the same settings names as the code."""

import re
from pathlib import Path
from typing import Any

import yaml

from runtime.settings import PROJECT_ROOT, Settings, env_names


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text()))


def test_compose_has_the_official_servers_and_our_services() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    assert services["mongo"]["image"].startswith("mongo:")
    for name in ("migrate", "command-api", "query-api", "relay", "projector", "expirer", "sealer"):
        assert services[name]["build"] == "."


def test_every_ledger_variable_in_compose_is_a_setting() -> None:
    used = set(re.findall(r"\bLEDGER_[A-Z_]+\b", (PROJECT_ROOT / "compose.yaml").read_text()))
    assert {"LEDGER_DATABASE_URL", "LEDGER_KAFKA_BOOTSTRAP", "LEDGER_MONGO_URL"} <= used
    assert used <= env_names()


def test_compose_environment_parses_into_settings() -> None:
    environment = compose()["services"]["relay"]["environment"]
    settings = Settings.from_env({k: str(v) for k, v in environment.items()})
    assert settings.kafka_partitions == 4
    assert settings.database_url and settings.database_url.startswith("postgresql://")


def test_the_dockerfile_copies_what_the_services_need() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for needed in ("COPY src", "COPY migrations", "LEDGER_MIGRATIONS_DIR"):
        assert needed in dockerfile
    assert Path(PROJECT_ROOT / "migrations").is_dir()
