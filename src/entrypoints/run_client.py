"""`ledger payouts run FILE`: a payout run's file sent through the command API, started,
and followed on the query API with a progress bar, as an operator would from a shell.

It speaks HTTP with an API key (``LEDGER_API_KEY``, else the admin key `ledger up` made),
to the APIs a running stack lists in ``run/state.json`` unless given their URLs: it is a
client, not a service, and needs no database.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests
from tqdm import tqdm

ENDED = ("completed", "cancelled")
TIMEOUT = 120  # seconds for one request: a 10,000-row file is checked whole before the answer


class RunFailed(Exception):
    """The run could not be sent or started: the API's problem, for the operator."""


@dataclass(frozen=True)
class Apis:
    command: str
    query: str
    token: str = field(repr=False)  # a key: never in a traceback or a log line

    @classmethod
    def of_stack(cls, data_dir: Path, token: str | None) -> Apis:
        state = data_dir / "run" / "state.json"
        try:
            urls = json.loads(state.read_text())["urls"]
        except (OSError, ValueError, KeyError) as exc:
            raise RunFailed(f"no running stack in {data_dir} ({exc}); give --command-url and --query-url") from None
        key = token or _read_key(data_dir / "admin.key")
        return cls(urls["command_api"], urls["query_api"], key)


def _read_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        raise RunFailed(f"no API key: set LEDGER_API_KEY (the admin key is not at {path})") from None


def upload(apis: Apis, http: requests.Session, path: Path, run_id: str | None) -> dict[str, Any]:
    """Send the file (CSV, or JSON when it ends in .json); the run as the API answers it."""
    body = path.read_bytes()
    if path.suffix.lower() == ".json":
        headers = {"Content-Type": "application/json"}
        reply = http.post(f"{apis.command}/v1/payout-runs", data=body, headers=headers, timeout=TIMEOUT)
    else:
        if not run_id:
            raise RunFailed("a CSV file needs the run's id: --id RUN_ID")
        reply = http.post(
            f"{apis.command}/v1/payout-runs",
            params={"id": run_id},
            data=body,
            headers={"Content-Type": "text/csv"},
            timeout=TIMEOUT,
        )
    return _answer(reply)


def start(apis: Apis, http: requests.Session, run_id: str) -> dict[str, Any]:
    return _answer(http.post(f"{apis.command}/v1/payout-runs/{run_id}/start", timeout=TIMEOUT))


def follow(apis: Apis, http: requests.Session, run: dict[str, Any], out: TextIO, every: float = 1.0) -> dict[str, Any]:
    """Poll the run until it ends, a bar counting rows ended (paid or failed)."""
    view: dict[str, Any] = {"state": run["state"]}
    with tqdm(total=run["rows"], unit="row", file=out, desc=run["id"]) as bar:
        while view["state"] not in ENDED:
            time.sleep(every)
            reply = http.get(f"{apis.query}/v1/payout-runs/{run['id']}", timeout=TIMEOUT)
            if reply.status_code == 404:
                continue  # the read model has not shown it yet
            view = _answer(reply)
            counts = view["counts"]
            bar.n = counts["success"] + counts["failed"]
            bar.set_postfix(state=view["state"], failed=counts["failed"], refresh=False)
            bar.refresh()
    return view


def _answer(reply: requests.Response) -> dict[str, Any]:
    try:
        body: dict[str, Any] = reply.json()
    except ValueError:
        raise RunFailed(f"HTTP {reply.status_code}: {reply.text[:200]}") from None
    if reply.status_code >= 400:
        lines = [f"{reply.status_code} {body.get('code')}: {body.get('detail')}"]
        lines += [f"  row {r['row']} {r['field'] or ''}: {r['code']} ({r['detail']})" for r in body.get("rows", [])]
        raise RunFailed("\n".join(lines))
    return body


def session(token: str) -> requests.Session:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    return http
