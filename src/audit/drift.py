"""The replay's balances against the MongoDB read models: what queries answer must be
what the event store says.

The store keeps moving while the auditor replays it, so an account is compared only at
the version the replay reached; one the projector has moved past since is skipped (and
counted), one it has not reached yet when its watermark says it should have is drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from audit.folds import Finding
from audit.verify import Verifier
from contracts.readmodel import ACCOUNTS, wait_for_position, watermark
from ledger.accounts import BALANCE_FIELDS


@dataclass
class Drift:
    findings: list[Finding]
    compared: int
    moved_since: int  # accounts the read model shows at a later version than the replay's


def read_model_drift(verifier: Verifier, db: Database[Any], *, wait_seconds: float = 10.0) -> Drift:
    position = verifier.last_position
    if not wait_for_position(db, position, wait_seconds):
        detail = f"the read model has applied events up to {watermark(db)}; the replay reached {position}"
        return Drift([Finding("read_model_behind", None, "read model", detail)], 0, 0)
    balances, versions = verifier.balances(), verifier.account_versions()
    findings: list[Finding] = []
    compared = moved_since = 0
    projection = {"version": 1, "position": 1, "opened_position": 1, **{f: 1 for f in BALANCE_FIELDS}}
    for doc in db[ACCOUNTS].find({}, projection):
        account = doc["_id"]
        mine = balances.pop(account, None)
        if mine is None:
            if int(doc.get("opened_position", 0)) <= position:
                findings.append(_drift(account, "is in the read model but was never opened in the event store"))
            continue
        if doc["version"] > versions[account]:
            moved_since += 1
            continue
        compared += 1
        if doc["version"] < versions[account]:
            findings.append(_drift(account, f"is at version {doc['version']}; the event store at {versions[account]}"))
            continue
        wrong = [f"{f} {doc[f]} (replay: {mine[f]})" for f in BALANCE_FIELDS if int(doc[f]) != mine[f]]
        if wrong:
            findings.append(_drift(account, "shows " + ", ".join(wrong)))
    findings.extend(_drift(account, "is missing from the read model") for account in sorted(balances))
    return Drift(findings, compared, moved_since)


def _drift(account: str, detail: str) -> Finding:
    return Finding("drift", None, f"account {account}", f"the read model's account {detail}")
