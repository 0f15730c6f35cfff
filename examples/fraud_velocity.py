"""An example fraud service: freeze an account that sends too many transfers too fast.

It subscribes to the ledger's event stream with its own consumer group, counts each
account's outgoing transfers over the last minute (by event time), and when one goes
over the limit it asks the command API to freeze the account. It shows the contract in
use: CloudEvents headers, keys per subject, deduplication by ``ce_id``, and a
service-to-service call signed with LEDGER-HMAC-SHA256 (freezing needs an admin key;
make a signed-only one for it):

    ledger keys create --name fraud-velocity --scope admin --signed-only > fraud-key.json
    python examples/fraud_velocity.py --bootstrap 127.0.0.1:19092 \\
        --command-api http://127.0.0.1:8081 --key-file fraud-key.json --max-per-minute 10

A Kafka message is a fact, not an order: the service decides, and the ledger checks the
service's key like any other client's.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import secrets
import signal
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta

import requests
from confluent_kafka import Consumer

log = logging.getLogger("fraud_velocity")

OUTGOING = {"ledger.transfer.posted.v1", "ledger.transfer.pending.v1"}


class VelocityRule:
    """More than ``limit`` outgoing transfers in ``window`` from one account is suspicious."""

    def __init__(self, limit: int, window: timedelta = timedelta(minutes=1)) -> None:
        self.limit = limit
        self.window = window
        self.recent: dict[str, deque[datetime]] = defaultdict(deque)
        self.flagged: set[str] = set()

    def observe(self, account: str, at: datetime) -> bool:
        """Record one outgoing transfer; True the first time the account goes over the limit."""
        times = self.recent[account]
        times.append(at)
        while times and at - times[0] > self.window:
            times.popleft()
        if len(times) > self.limit and account not in self.flagged:
            self.flagged.add(account)
            return True
        return False


def signed_headers(key_id: str, secret: str, method: str, path_with_query: str, body: bytes) -> dict[str, str]:
    """The ledger's LEDGER-HMAC-SHA256 scheme, with nothing but the standard library."""
    ts, nonce = str(int(time.time())), secrets.token_urlsafe(24)
    message = "\n".join(["LEDGER-HMAC-SHA256", ts, nonce, method, path_with_query, hashlib.sha256(body).hexdigest()])
    sig = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return {"Authorization": f"LEDGER-HMAC-SHA256 key={key_id}, ts={ts}, nonce={nonce}, sig={sig}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default="ledger.events")
    parser.add_argument("--group", default="fraud-velocity")
    parser.add_argument("--command-api", required=True)
    parser.add_argument("--key-file", required=True, help='JSON {"key_id", "secret"} from `ledger keys create`')
    parser.add_argument("--max-per-minute", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(message)s")
    with open(args.key_file) as key_file:
        key = json.load(key_file)

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([args.topic])
    rule = VelocityRule(args.max_per_minute)
    seen: set[str] = set()  # ce_id: delivery is at least once
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("watching %s for more than %d transfers a minute", args.topic, args.max_per_minute)
    try:
        while running:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            headers = {name: (value or b"").decode() for name, value in message.headers() or []}
            if headers.get("ce_type") not in OUTGOING or headers["ce_id"] in seen:
                continue
            seen.add(headers["ce_id"])
            data = json.loads(message.value() or b"{}")
            account = data["debit_account"]
            if account.startswith("$"):
                continue  # system accounts (deposits) are not customers
            if rule.observe(account, datetime.fromisoformat(headers["ce_time"])):
                path = f"/v1/accounts/{account}/freeze"
                headers = signed_headers(key["key_id"], key["secret"], "POST", path, b"")
                reply = requests.post(args.command_api + path, headers=headers, timeout=10)
                log.warning(
                    "froze %s after more than %d transfers in a minute: %s", account, rule.limit, reply.status_code
                )
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
