"""A payout run's file, CSV or JSON, to an upload command: every row's shape checked on
its own, and its problems carried along with the rows that passed, for the handler to
add what needs the ledger (accounts, assets, scales) and report every problem at once,
with its row and field, so a client can correct the whole file in one go.

CSV: a header naming ``id,account,amount,destination`` and optionally ``memo``, then one
row per payment. JSON: ``{"id": RUN_ID, "rows": [{...}, ...]}``. Rows are numbered from 1
in the order given (for CSV, the header is not a row).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from decimal import Decimal
from typing import Any

from stellar_sdk import StrKey

from commands.messages import RowRequest, UploadPayoutRun
from ledger.errors import InvalidAmount, InvalidRequest, InvalidRows
from ledger.ids import CLIENT_ID
from ledger.money import split_amount
from ledger.payout_runs import MAX_ROWS

MAX_FILE_BYTES = 4 * 1024 * 1024  # 10,000 rows of up to ~400 bytes
FIELDS = ("id", "account", "amount", "destination", "memo")
REQUIRED = FIELDS[:4]
MAX_MEMO_BYTES = 28
MAX_REPORTED = 1000  # row problems listed in a refusal; the detail gives the count


def from_csv(run_id: str | None, raw: bytes) -> UploadPayoutRun:
    if not run_id:
        raise InvalidRequest("name the run in the query string: POST /v1/payout-runs?id=RUN_ID")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the file is not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise InvalidRequest("the file is empty; send a header line and rows") from None
    except csv.Error as exc:
        raise InvalidRequest(f"the header line does not read as CSV: {exc}") from None
    unknown = [name for name in header if name not in FIELDS]
    missing = [name for name in REQUIRED if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise InvalidRequest(f"the header must be {','.join(FIELDS)} (memo optional); got {','.join(header)}")
    rows: list[dict[str, Any]] = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # a blank line
            if len(values) != len(header):
                rows.append({"_width": len(values)})
            else:
                rows.append({name: value for name, value in zip(header, values, strict=True) if value != ""})
            if len(rows) > MAX_ROWS:
                break
    except csv.Error as exc:
        raise InvalidRequest(f"line {reader.line_num} does not read as CSV: {exc}") from None
    return _checked(run_id, rows, expected_width=len(header))


def from_json(body: Any) -> UploadPayoutRun:
    if not isinstance(body, dict) or set(body) - {"id", "rows"} or not isinstance(body.get("rows"), list):
        raise InvalidRequest('send {"id": RUN_ID, "rows": [{"id", "account", "amount", "destination", "memo"?}, ...]}')
    run_id = body.get("id")
    if not isinstance(run_id, str):
        raise InvalidRequest("id must be a string: the run's id")
    rows = [row if isinstance(row, dict) else {"_not_object": True} for row in body["rows"][: MAX_ROWS + 1]]
    return _checked(run_id, rows, expected_width=None)


def _checked(run_id: str, rows: list[dict[str, Any]], *, expected_width: int | None) -> UploadPayoutRun:
    if not CLIENT_ID.fullmatch(run_id) or len(run_id) > 64:
        raise InvalidRequest(
            "the run's id must be 1-64 characters from [A-Za-z0-9._:-], starting with one of A-Za-z0-9"
        )
    if not rows:
        raise InvalidRequest("the file has no rows")
    if len(rows) > MAX_ROWS:
        raise InvalidRequest(f"a run has at most {MAX_ROWS} rows")
    problems: list[dict[str, Any]] = []
    checked: list[RowRequest] = []
    seen: set[str] = set()
    for number, fields in enumerate(rows, start=1):
        found = _row_problems(number, fields, expected_width)
        row_id = fields.get("id")
        if not found and row_id in seen:
            found.append({"row": number, "field": "id", "code": "duplicate_id", "detail": f"id {row_id!r} repeats"})
        problems.extend(found)
        if not found:
            seen.add(row_id)  # type: ignore[arg-type]
            checked.append(
                RowRequest(
                    row_id,  # type: ignore[arg-type]
                    fields["account"],
                    fields["amount"],
                    fields["destination"],
                    fields.get("memo"),
                    number=number,
                )
            )
    return UploadPayoutRun(id=run_id, rows=tuple(checked), fingerprint=fingerprint(checked), problems=tuple(problems))


def _row_problems(number: int, fields: dict[str, Any], expected_width: int | None) -> list[dict[str, Any]]:
    def problem(field: str | None, code: str, detail: str) -> dict[str, Any]:
        return {"row": number, "field": field, "code": code, "detail": detail}

    if "_width" in fields:
        return [problem(None, "malformed_row", f"{fields['_width']} values; the header names {expected_width}")]
    if "_not_object" in fields:
        return [problem(None, "malformed_row", "a row must be a JSON object")]
    found = [problem(name, "unknown_field", f"{name!r} is not a row field") for name in fields if name not in FIELDS]
    found += [problem(name, "missing", f"{name} is required") for name in REQUIRED if fields.get(name) is None]
    for name in ("id", "account"):
        value = fields.get(name)
        if value is not None and not (isinstance(value, str) and CLIENT_ID.fullmatch(value) and len(value) <= 60):
            found.append(problem(name, f"invalid_{name}", "1-60 characters from [A-Za-z0-9._:-]"))
    amount = fields.get("amount")
    if amount is not None:
        try:
            whole, fraction = split_amount(amount)
            if not (whole.strip("0") or fraction.strip("0")):
                raise InvalidAmount("the amount must be more than zero")
        except InvalidAmount as exc:
            found.append(problem("amount", "invalid_amount", exc.detail))
    destination = fields.get("destination")
    if destination is not None and not (
        isinstance(destination, str) and StrKey.is_valid_ed25519_public_key(destination)
    ):
        found.append(problem("destination", "invalid_destination", "a Stellar account id (G..., 56 characters)"))
    memo = fields.get("memo")
    if memo is not None and not (isinstance(memo, str) and 0 <= _utf8_length(memo) <= MAX_MEMO_BYTES):
        found.append(problem("memo", "invalid_memo", f"a text of at most {MAX_MEMO_BYTES} bytes of UTF-8"))
    return found


def _utf8_length(text: str) -> int:
    """Its length in UTF-8; -1 for text no UTF-8 can hold (a lone surrogate from JSON's
    \\ud800), which the event store could not write."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return -1


def refused(problems: list[dict[str, Any]]) -> InvalidRows:
    shown = problems[:MAX_REPORTED]
    more = f" (the first {len(shown)} are listed)" if len(problems) > len(shown) else ""
    rows = len({p["row"] for p in problems})
    return InvalidRows(f"{rows} rows cannot be paid as they are; nothing was written{more}", shown)


def fingerprint(rows: list[RowRequest]) -> str:
    """What identifies a run's file: amounts compare by value ("1.0" is "1.00"), and a
    CSV and a JSON file with the same rows are the same file."""
    canonical = [[r.id, r.account, str(Decimal(r.amount).normalize()), r.destination, r.memo] for r in rows]
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()
