"""The `ledger` CLI's read-model check, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from commands.application import Ledger
from queries import readmodel
from tests.conftest import Urls
from tests.integration.test_pipeline import project_everything, some_activity


def run_verify(servers: Urls, db_name: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        {
            "LEDGER_DATABASE_URL": servers.database_url,
            "LEDGER_MONGO_URL": servers.mongo_url,
            "LEDGER_MONGO_DB": db_name,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "projections", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_verify_passes_on_a_faithful_read_model_and_names_an_edited_one(
    ledger: Ledger, servers: Urls, mongo_db: Any
) -> None:
    a, _ = some_activity(ledger, transfers=2)
    project_everything(ledger, servers, mongo_db)
    clean = run_verify(servers, mongo_db.name)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no differences" in clean.stdout
    mongo_db[readmodel.ACCOUNTS].update_one({"_id": a}, {"$set": {"posted_credits": "1"}})
    edited = run_verify(servers, mongo_db.name)
    assert edited.returncode == 1
    assert f"DIFF account {a!r}" in edited.stdout
