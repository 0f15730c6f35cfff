"""The chain worker's watch on the distribution account: reported low once per crossing,
before the payouts it cannot cover fail on chain.

The chain is the bundled Horizon simulator (no Stellar network is reachable here); the
event store and the worker's tables are real.
"""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import REGISTRY

from chain.balance_watch import BalanceWatch
from chain.stellar import horizon_client
from ledger.distribution import DistributionBalance
from tests.conftest import Urls
from tests.integration.test_chain import Chain, chain, payout

assert chain  # the fixture, imported for this module's tests

USDC = 10**7  # one USDC/7, in minor units


def crossings(chain: Chain) -> list[tuple[str, int, int, int]]:
    stream = DistributionBalance.create_id(chain.keys.distribution.public_key, "USDC/7")
    return [
        ("Low" if getattr(e, "low", True) else "Recovered", e.balance, e.needed, e.floor)
        for e in chain.books.events.get(stream)
    ]


def test_the_distribution_account_is_reported_low_once_per_crossing_before_payouts_fail(
    chain: Chain, servers: Urls
) -> None:
    chain.settle()  # other tests' payouts, in the shared tables, need nothing any more
    distribution = chain.keys.distribution.public_key
    chain.sim.network.accounts[distribution].balances[f"USDC:{chain.issuer.public_key}"] = 100 * USDC
    watch = BalanceWatch(
        replace(chain.settings, low_balance_floors={"USDC/7": 10 * USDC}),
        chain.store,
        chain.books,
        horizon_client(chain.settings.horizon_url),
    )
    assert watch.look() == {"XLM/7": False, "USDC/7": False}
    assert crossings(chain) == []

    payer = chain.funded_account("USDC/7", "500")
    paid = [payout(chain, payer, "40", chain.destination()) for _ in range(3)]
    for payout_id in paid:
        chain.take_in(payout_id)
    assert watch.look()["USDC/7"]  # 100 held < 120 needed + 10 kept
    assert watch.look()["USDC/7"]
    assert crossings(chain) == [("Low", 100 * USDC, 120 * USDC, 10 * USDC)]  # once, not per look
    assert REGISTRY.get_sample_value("ledger_chain_distribution_balance", {"asset": "USDC/7"}) == 100.0
    assert REGISTRY.get_sample_value("ledger_chain_distribution_needed", {"asset": "USDC/7"}) == 130.0
    records = [chain.books.payout_record(payout_id) for payout_id in paid]
    assert all(record is not None and record.state != "failed" for record in records)  # reported before any fails

    rows = [chain.pump(payout_id) for payout_id in paid]
    assert sorted(row["state"] for row in rows) == ["confirmed", "confirmed", "failed"]
    (failed,) = (row for row in rows if row["state"] == "failed")
    assert "op_underfunded" in failed["reason"]

    assert not watch.look()["USDC/7"]  # nothing in flight: 20 held >= 10 kept
    last = payout(chain, payer, "15", chain.destination())
    chain.take_in(last)
    assert watch.look()["USDC/7"]  # 20 < 15 + 10: the second crossing
    assert [c[0] for c in crossings(chain)] == ["Low", "Recovered", "Low"]
    assert crossings(chain)[1:] == [("Recovered", 20 * USDC, 0, 10 * USDC), ("Low", 20 * USDC, 15 * USDC, 10 * USDC)]
    assert chain.pump(last)["state"] == "confirmed"  # low is a warning: what it holds still pays out
