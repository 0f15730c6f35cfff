"""Settings come from LEDGER_* environment variables; unset means the embedded default."""

from pathlib import Path

import pytest

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
