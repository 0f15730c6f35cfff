"""Payouts confirmed per second, end to end, against a running stack on the Horizon simulator.

    make run                                    # 4 channel accounts (the keys `ledger up` makes)
    .venv/bin/python benchmarks/payouts.py --count 400

For one channel, start the stack with a keys file that has one:

    .venv/bin/python -c "from chain.stellar import Keys; Keys.generate(1).save(__import__('pathlib').Path('/tmp/one.json'))"
    LEDGER_STELLAR_SECRETS_FILE=/tmp/one.json make run

It opens an XLM account, funds it, creates the destinations on the simulator, sends the
payouts through the command API (4 client threads, each paying from its own account), and polls the query API until every
one is confirmed. The rate is counted from the first request to the last confirmation.

With ``--run``, the payouts go as one payout run instead: a CSV file of ``--count`` rows
(1,000 by default there) uploaded, started, and the run polled on the query API until it
is completed; the rate is rows confirmed per second from the start to completion:

    .venv/bin/python benchmarks/payouts.py --run --count 1000
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from pathlib import Path

import psutil
import requests
from stellar_sdk import Keypair


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", default=".ledger/run/state.json")
    parser.add_argument("--horizon", default="http://127.0.0.1:8083")
    parser.add_argument("--count", type=int, default=None, help="default: 400 payouts, or a run of 1000 rows")
    parser.add_argument("--run", action="store_true", help="one payout run (CSV) instead of single payouts")
    args = parser.parse_args()
    args.count = args.count or (1000 if args.run else 400)
    urls = json.loads(Path(args.state).read_text())["urls"]
    command, query = urls["command_api"], urls["query_api"]
    horizon = urls.get("horizon_url") or args.horizon
    run = uuid.uuid4().hex[:8]
    auth = {"Authorization": "Bearer " + (Path(args.state).parent.parent / "admin.key").read_text().strip()}
    http = requests.Session()
    http.headers.update(auth)
    payers = [f"bench-payer-{run}-{k}" for k in range(4)]  # one per client: no hot account
    for account in payers:
        http.post(f"{command}/v1/accounts", json={"id": account, "asset": "XLM/7"}).raise_for_status()
        http.post(f"{command}/v1/deposits", json={"id": f"{account}-f", "account": account, "amount": "100000"})
    destinations = [Keypair.random().public_key for _ in range(args.count)]
    for destination in destinations:
        http.post(f"{horizon}/_sim/accounts", json={"account_id": destination, "xlm": "1"}).raise_for_status()
    ids = [f"bench-{run}-{n}" for n in range(args.count)]
    if args.run:
        pay_as_run(http, command, query, run, payers, destinations)
        for name, mib in peak_memory(json.loads(Path(args.state).read_text())["children"]).items():
            print(f"peak RSS of {name}: {mib:.0f} MiB")  # since the stack started: compare runs of 1,000 and 10,000
        return

    failures: list[Exception] = []

    def send(account: str, part: list[int]) -> None:
        session = requests.Session()
        session.headers.update(auth)
        try:
            for n in part:
                body = {"id": ids[n], "account": account, "amount": "1.5", "destination": destinations[n]}
                session.post(f"{command}/v1/payouts", json=body, timeout=30).raise_for_status()
        except requests.RequestException as exc:
            failures.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(payers[k], list(range(k, args.count, 4)))) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = time.monotonic()
    if failures:
        raise SystemExit(f"a client failed: {failures[0]!r}")
    pending = set(ids)
    while pending:
        for payout_id in list(pending):
            reply = http.get(f"{query}/v1/payouts/{payout_id}", timeout=10)
            if reply.status_code == 200 and reply.json()["state"] in ("confirmed", "failed"):
                assert reply.json()["state"] == "confirmed", reply.json()
                pending.discard(payout_id)
        if pending:
            time.sleep(0.2)
    took = time.monotonic() - started
    print(f"{args.count} payouts requested in {sent - started:.1f}s, all confirmed after {took:.1f}s")
    print(f"confirmed payouts/s: {args.count / took:.1f}")


def pay_as_run(
    http: requests.Session, command: str, query: str, run: str, payers: list[str], destinations: list[str]
) -> None:
    rows = ["id,account,amount,destination,memo"]
    rows += [f"r{n},{payers[n % len(payers)]},1.5,{d},bench" for n, d in enumerate(destinations)]
    run_id = f"bench-run-{run}"
    http.close()  # its connections sat idle while the destinations were made: the API may have closed them
    started = time.monotonic()
    uploaded = http.post(
        f"{command}/v1/payout-runs",
        params={"id": run_id},
        data="\n".join(rows).encode(),
        headers={"Content-Type": "text/csv"},
        timeout=120,
    )
    uploaded.raise_for_status()
    checked = time.monotonic()
    http.post(f"{command}/v1/payout-runs/{run_id}/start", timeout=30).raise_for_status()
    view: dict[str, object] = {}
    while view.get("state") != "completed":
        time.sleep(0.5)
        reply = http.get(f"{query}/v1/payout-runs/{run_id}", timeout=30)
        if reply.status_code == 200:
            view = reply.json()
    took = time.monotonic() - checked
    counts = view["counts"]
    print(
        f"a run of {len(destinations)} rows: checked and stored in {checked - started:.1f}s, completed {took:.1f}s later"
    )
    print(f"rows: {counts}")
    print(f"rows confirmed/s: {counts['success'] / took:.1f}")  # type: ignore[index]


def peak_memory(children: dict[str, int]) -> dict[str, float]:
    """The largest resident set each worker process of the run's path has had (VmHWM), in
    MiB; an API is its gunicorn workers' largest."""
    peaks: dict[str, float] = {}
    for name in ("command-api", "query-api", "chain", "projector"):
        if name not in children:
            continue
        root = psutil.Process(children[name])
        for process in [root, *root.children(recursive=True)]:
            status = Path(f"/proc/{process.pid}/status").read_text()
            kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            peaks[name] = max(peaks.get(name, 0.0), kib / 1024)
    return peaks


if __name__ == "__main__":
    main()
