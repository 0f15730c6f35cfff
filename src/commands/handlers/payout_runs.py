"""Payout runs: a file of payouts checked whole and stored in chunks; started, paused,
resumed, cancelled or retried by a client; its rows requested as payouts, and the run
completed, by the chain worker (``chain.runs``), which pays them.

Requesting a row's payout is idempotent (its id is derived from the run, the row and
the attempt), so the worker may request a chunk again after a crash.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from commands import run_files
from commands.answers import Replayed
from commands.handlers.context import Writer
from commands.handlers.payouts import request_payout
from commands.messages import PayoutRunAction, RequestPayout, UploadPayoutRun
from ledger.accounts import OPEN
from ledger.errors import AccountNotFound, IdConflict, InvalidAmount, LedgerError, RunNotFound
from ledger.ids import account_uuid
from ledger.money import Asset
from ledger.payout_runs import CHUNK_ROWS, STARTED, PayoutRun, Row, RowChunk, row_payout_id
from ledger.payouts import MAX_CHAIN_AMOUNT


def upload_run(w: Writer, cmd: UploadPayoutRun) -> dict[str, Any]:
    """Check every row against the ledger (its account exists, is open and pays out in
    an asset mapped to the chain; its amount fits the asset and the chain), and store
    the run ready to start, or refuse the whole file naming every bad row."""
    existing = w.payout_run(cmd.id)
    if existing is not None:
        if cmd.problems or existing.fingerprint != cmd.fingerprint:
            raise IdConflict(f"payout run id {cmd.id!r} was already used with another file")
        return Replayed(run_result(w.as_created(existing), w.position_of(existing.id)))
    w.work.prefetch(account_uuid(a) for a in {row.account for row in cmd.rows})
    rows: list[Row] = []
    problems = list(cmd.problems)
    totals: dict[str, int] = defaultdict(int)
    for request in cmd.rows:
        try:
            rows.append(_row(w, request.id, request.account, request.amount, request.destination, request.memo))
        except _RowProblem as problem:
            problems.append({"row": request.number, **problem.fields})
            continue
        totals[rows[-1].asset] += rows[-1].amount
    if problems:
        raise run_files.refused(sorted(problems, key=lambda p: p["row"]))
    chunks = [
        RowChunk(run_id=cmd.id, index=n, rows=[row.as_dict() for row in rows[start : start + CHUNK_ROWS]])
        for n, start in enumerate(range(0, len(rows), CHUNK_ROWS))
    ]
    run = PayoutRun(
        run_id=cmd.id,
        fingerprint=cmd.fingerprint,
        rows=len(rows),
        chunks=len(chunks),
        totals={asset: str(amount) for asset, amount in sorted(totals.items())},
    )
    return run_result(run, w.save(*chunks, run))  # the run last: its first event is the command's position


class _RowProblem(Exception):
    def __init__(self, field: str, code: str, detail: str) -> None:
        super().__init__(detail)
        self.fields = {"field": field, "code": code, "detail": detail}


def _row(w: Writer, row_id: str, account_id: str, amount_text: str, destination: str, memo: str | None) -> Row:
    try:
        account = w.account(account_id)
    except AccountNotFound as exc:
        raise _RowProblem("account", exc.code, exc.detail) from None
    if account.system:
        raise _RowProblem("account", "account_not_found", f"account {account_id!r} does not exist")
    if account.asset not in w.payout_assets:
        raise _RowProblem("account", "asset_not_on_chain", f"{account.asset} is not mapped to a Stellar asset")
    if account.status != OPEN:
        raise _RowProblem("account", "account_not_open", f"account {account_id!r} is {account.status}")
    unit = Asset.parse(account.asset)
    try:
        amount = unit.parse_amount(amount_text)
    except InvalidAmount as exc:
        raise _RowProblem("amount", exc.code, exc.detail) from None
    if amount > MAX_CHAIN_AMOUNT:
        detail = f"{unit.format(amount)} is more than one Stellar payment carries"
        raise _RowProblem("amount", "amount_exceeds_chain_limit", detail)
    return Row(row_id, account_id, account.asset, amount, destination, memo)


def run_action(w: Writer, cmd: PayoutRunAction) -> dict[str, Any]:
    """Start, pause, resume and cancel answer a repeat as the first time; retry records
    an attempt each time (only a completed run with failed rows retries)."""
    run = _run(w, cmd.run)
    if cmd.action == "retry":
        run.retry()
        changed = True
    else:
        changed = getattr(run, cmd.action)()
    position = w.save(run) if changed else w.position_of(run.id, run.version)
    return run_result(run, position)


def request_rows(w: Writer, run_id: str, attempt: int, rows: list[Row]) -> dict[str, int]:
    """The chain worker's step: request the payouts of some rows of a started run (each
    stands or falls alone), and record the rows whose payout was refused. Nothing is
    requested unless the run is started in this attempt (paused or cancelled meanwhile)."""
    run = _run(w, run_id)
    if run.state != STARTED or run.attempt != attempt:
        return {"requested": 0, "refused": 0, "not_started": 1}
    refused: list[dict[str, str]] = []
    requested = 0
    for row in rows:
        if run.refused.get(row.id) == attempt:
            continue  # refused in this attempt already (a chunk requested again): it stays failed
        unit = Asset.parse(row.asset)
        payout = RequestPayout(
            row_payout_id(run_id, row.id, attempt), row.account, unit.format(row.amount), row.destination, row.memo
        )
        try:
            with w.work.scope():
                request_payout(w, payout)
            requested += 1
        except LedgerError as exc:
            refused.append({"row": row.id, "code": exc.code, "reason": exc.detail[:300]})
    if refused and run.fail_rows(refused):
        w.save(run)
    return {"requested": requested, "refused": len(refused)}


def complete_run(w: Writer, run_id: str, succeeded: int, failed: int) -> bool:
    run = _run(w, run_id)
    if not run.complete(succeeded, failed):
        return False
    w.save(run)
    return True


def _run(w: Writer, run_id: str) -> PayoutRun:
    run = w.payout_run(run_id)
    if run is None:
        raise RunNotFound(f"payout run {run_id!r} does not exist")
    return run


def run_result(run: PayoutRun, position: Any) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "state": run.state,
        "rows": run.rows,
        "attempt": run.attempt,
        "totals": {asset: Asset.parse(asset).format(int(amount)) for asset, amount in run.totals.items()},
        "position": position,
    }
