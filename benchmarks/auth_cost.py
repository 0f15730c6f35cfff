"""What authentication costs per request: the same trivial route served in-process by
falcon with and without the key check, bearer and signed, on the running stack's
PostgreSQL (keys are looked up there; signed requests record their nonce there).

    make run   # in another terminal
    PYTHONPATH=src .venv/bin/python benchmarks/auth_cost.py --requests 5000

Bearer keys are checked against a per-process cache (SHA-256 of the secret, constant-time
compare) and looked up again every 2 s; a signed request also inserts its nonce, one
round trip to PostgreSQL, since every API process must refuse a replay.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import falcon
import falcon.testing

from auth import signing
from auth.http import Authenticate
from auth.store import KeyStore
from runtime import web
from runtime.settings import Settings


class Ping:
    scope = "read"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"ok": True}


def timed(client: falcon.testing.TestClient, count: int, headers: Callable[[], dict[str, str]]) -> list[float]:
    samples = []
    for _ in range(count):
        h = headers()
        started = time.perf_counter()
        result = client.simulate_get("/ping", headers=h)
        samples.append(time.perf_counter() - started)
        assert result.status_code == 200, result.text
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=".ledger")
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    settings = Settings.from_env({"LEDGER_DATA_DIR": str(Path(args.data_dir))}, discover=True)
    keys = KeyStore(settings.require("database_url"))
    key, secret = keys.create("benchmark: auth cost", ["read"])
    plain = web.create_base_app()
    plain.add_route("/ping", Ping())
    guarded = web.create_base_app(Authenticate(keys))
    guarded.add_route("/ping", Ping())
    bearer = {"Authorization": f"Bearer {key.key_id}.{secret}"}
    runs = {
        "no authentication": (falcon.testing.TestClient(plain), dict),
        "bearer key": (falcon.testing.TestClient(guarded), lambda: bearer),
        "signed request": (
            falcon.testing.TestClient(guarded),
            lambda: {"Authorization": signing.signed_header(key.key_id, secret, "GET", "/ping")},
        ),
    }
    try:
        results = {}
        for name, (client, headers) in runs.items():
            timed(client, min(200, args.requests), headers)  # warm up
            results[name] = timed(client, args.requests, headers)
    finally:
        keys.revoke(key.key_id)
        keys.close()
    base = statistics.median(results["no authentication"])
    print(f"{args.requests} requests each, in-process (falcon test client), medians and p99:")
    for name, samples in results.items():
        median, p99 = statistics.median(samples), statistics.quantiles(samples, n=100)[98]
        extra = "" if name == "no authentication" else f"   +{(median - base) * 1e6:7.0f} us per request"
        print(f"  {name:18} {median * 1e6:7.0f} us  p99 {p99 * 1e6:7.0f} us{extra}")


if __name__ == "__main__":
    main()
