"""Settings come from LEDGER_* environment variables; unset means the embedded default."""

from pathlib import Path

import pytest

from chain.balance_watch import low_balance_floors
from chain.config import chain_settings
from runtime.settings import Settings, SettingsError


def test_unset_means_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None and settings.kafka_bootstrap is None and settings.mongo_url is None
    assert (settings.command_port, settings.query_port) == (8081, 8082)
    assert settings.data_dir == Path(".ledger")
    assert settings.host == "127.0.0.1"


def test_values_are_typed() -> None:
    settings = Settings.from_env(
        {"LEDGER_COMMAND_PORT": "9001", "LEDGER_DATA_DIR": "/tmp/x", "LEDGER_READ_WAIT_SECONDS": "0.5"}
    )
    assert settings.command_port == 9001
    assert settings.data_dir == Path("/tmp/x")
    assert settings.read_wait_seconds == 0.5


def test_a_bad_value_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="LEDGER_QUERY_PORT='eighty'"):
        Settings.from_env({"LEDGER_QUERY_PORT": "eighty"})


def test_requiring_an_unset_url_explains_how_to_get_one() -> None:
    with pytest.raises(SettingsError, match="LEDGER_DATABASE_URL is not set.*ledger up"):
        Settings().require("database_url")


def test_a_setting_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://ledger_writer:s3cret@db:5432/ledger\n")
    settings = Settings.from_env({"LEDGER_DATABASE_URL_FILE": str(secret)})
    assert settings.database_url == "postgresql://ledger_writer:s3cret@db:5432/ledger"
    assert "s3cret" not in repr(settings)  # whatever logs it
    assert Settings.from_env({"LEDGER_DATABASE_URL_FILE": str(secret), "LEDGER_DATABASE_URL": "x://y"}).database_url
    with pytest.raises(SettingsError, match="LEDGER_MONGO_URL_FILE"):
        Settings.from_env({"LEDGER_MONGO_URL_FILE": str(tmp_path / "missing")})


def test_kafka_clients_get_the_sasl_settings() -> None:
    settings = Settings.from_env(
        {
            "LEDGER_KAFKA_BOOTSTRAP": "kafka:9092",
            "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LEDGER_KAFKA_SASL_USERNAME": "ledger",
            "LEDGER_KAFKA_SASL_PASSWORD": "pw-123",
        }
    )
    assert settings.kafka_client() == {
        "bootstrap.servers": "kafka:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "ledger",
        "sasl.password": "pw-123",
    }
    assert "pw-123" not in repr(settings)
    assert Settings.from_env({"LEDGER_KAFKA_BOOTSTRAP": "k:1"}).kafka_client() == {"bootstrap.servers": "k:1"}


def test_the_clis_api_key_is_a_setting_never_shown() -> None:
    settings = Settings.from_env({"LEDGER_API_KEY": "lk_abc.s3cret-key"})
    assert settings.api_key == "lk_abc.s3cret-key"
    assert "s3cret-key" not in repr(settings)


def test_a_running_stack_is_found_and_explicit_variables_win(tmp_path: Path) -> None:
    """The supervisor's lock on the data directory says whether the state file is live."""
    import fcntl
    import json
    import os

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text(
        json.dumps({"settings": {"database_url": "postgresql://ledger_writer@h:1/ledger", "mongo_url": "mongodb://m/"}})
    )
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "stack.json").write_text(
        json.dumps({"database_url": "postgresql://ledger_writer:pw@h:1/ledger"})
    )
    environ = {"LEDGER_DATA_DIR": str(tmp_path), "LEDGER_MONGO_URL": "mongodb://mine/"}
    assert Settings.from_env(environ, discover=True).database_url is None  # no supervisor holds the lock
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as `ledger up` does
        found = Settings.from_env(environ, discover=True)
    finally:
        os.close(fd)
    assert found.database_url == "postgresql://ledger_writer:pw@h:1/ledger"
    assert found.mongo_url == "mongodb://mine/"
    assert Settings.from_env(environ).database_url is None  # an explicit mapping is taken as it is


def test_min_position_waiters_default_to_one_fewer_than_the_threads() -> None:
    assert Settings.from_env({}).read_waiters == 3
    assert Settings.from_env({"LEDGER_WEB_THREADS": "8"}).read_waiters == 7
    assert Settings.from_env({"LEDGER_WEB_THREADS": "1"}).read_waiters == 1
    assert Settings.from_env({"LEDGER_READ_WAIT_MAX_WAITERS": "0"}).read_waiters == 0
    with pytest.raises(SettingsError, match="LEDGER_READ_WAIT_MAX_WAITERS"):
        Settings.from_env({"LEDGER_READ_WAIT_MAX_WAITERS": "-1"})
    with pytest.raises(SettingsError, match="LEDGER_READ_WAIT_MAX_WAITERS='some'"):
        Settings.from_env({"LEDGER_READ_WAIT_MAX_WAITERS": "some"})


def test_the_request_timeout_is_positive() -> None:
    assert Settings.from_env({"LEDGER_WEB_REQUEST_TIMEOUT_SECONDS": "2.5"}).web_request_timeout_seconds == 2.5
    with pytest.raises(SettingsError, match="LEDGER_WEB_REQUEST_TIMEOUT_SECONDS"):
        Settings.from_env({"LEDGER_WEB_REQUEST_TIMEOUT_SECONDS": "0"})


def test_the_distribution_floors_are_read_at_each_payout_assets_scale() -> None:
    settings = Settings.from_env(
        {
            "LEDGER_STELLAR_ASSETS": "XLM/7=native,USDC/7=USDC:GISSUER",
            "LEDGER_CHAIN_LOW_BALANCE": "XLM/7=100, USDC/7=0.5",
        }
    )
    assert low_balance_floors(settings) == {"XLM/7": 100 * 10**7, "USDC/7": 5 * 10**6}
    assert low_balance_floors(Settings.from_env({})) == {}
    with pytest.raises(SettingsError, match="LEDGER_CHAIN_BALANCE_SECONDS must be more than 0"):
        Settings.from_env({"LEDGER_CHAIN_BALANCE_SECONDS": "0"})
    for value, error in (
        ("XLM/7", "must look like XLM/7=100"),
        ("EUR/7=1", "EUR/7 is not a payout asset"),
        ("XLM/7=1.00000001", "XLM/7=1.00000001"),
        ("XLM/7=-1", "XLM/7=-1"),
        ("XLM/7=1,XLM/7=2", "names XLM/7 twice"),
    ):
        with pytest.raises(SettingsError, match=error):
            low_balance_floors(Settings.from_env({"LEDGER_CHAIN_LOW_BALANCE": value}))


def test_the_chain_worker_without_its_keys_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="LEDGER_STELLAR_SECRETS_FILE is not set"):
        chain_settings(Settings.from_env({}))
