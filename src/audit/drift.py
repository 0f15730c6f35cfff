"""The auditor's replay against the MongoDB read model: what queries answer must be what
the event store says.

The comparison is ``contracts.readmodel_check``'s, the one ``ledger projections verify``
makes; here the expected balances come from the auditor's own arithmetic. The store keeps
moving while the auditor replays it, so an account the projector has moved past since is
skipped (and counted); one it has not reached when its watermark says it should have is
drift.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from audit.folds import Finding
from audit.verify import Verifier
from contracts.readmodel_check import Comparison, Expected, ExpectedAccount, compare_read_model
from ledger.accounts import BALANCE_FIELDS


def read_model_drift(
    verifier: Verifier, db: Database[Any], *, wait_seconds: float = 10.0
) -> tuple[Comparison, list[Finding]]:
    """The comparison, and each difference as a finding. The auditor's store may be a
    replica behind the primary the projector follows, so the comparison always allows for
    a store that moved on (and leaves out the checks that need it to stand still)."""
    versions = verifier.account_versions()
    accounts = {
        account_id: ExpectedAccount(
            str(balances["asset"]), tuple(int(balances[f]) for f in BALANCE_FIELDS), versions[account_id]
        )
        for account_id, balances in verifier.balances().items()
    }
    expected = Expected(accounts, verifier.last_position)
    comparison = compare_read_model(db, expected, None, wait_seconds=wait_seconds)
    findings = [
        Finding("read_model_behind" if d.behind else "drift", None, d.subject, d.detail) for d in comparison.differences
    ]
    return comparison, findings
