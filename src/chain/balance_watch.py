"""The distribution account's balances on chain, judged against what payouts need.

Payouts are paid from the distribution account, and one it cannot cover fails on chain
(``op_underfunded``). Every ``balance_seconds`` this compares what the account holds of
each payout asset with what the payouts taken in and not yet on chain will pay, plus the
operator's floor (LEDGER_CHAIN_LOW_BALANCE), and has the ledger record each crossing into
low and back (``ledger.distribution``): one ``ledger.chain.distribution_low.v1`` per
crossing, whichever worker saw it first. The gauges show the figures of every look.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from stellar_sdk import Server
from stellar_sdk.exceptions import BaseRequestError

from chain.connections import ThreadConnections
from chain.stellar import STROOPS, asset_key, record_asset_key, stroops_of
from commands.application import Books
from ledger.distribution import is_low
from ledger.errors import LedgerError
from ledger.money import Asset as LedgerAsset
from runtime import metrics
from runtime.settings import Settings, SettingsError

if TYPE_CHECKING:
    from chain.config import ChainSettings

log = logging.getLogger(__name__)

# A payout in these states has not reached the chain yet, as far as the worker knows
# (one "submitting" may have: counting it reports low a moment early, never late).
NOT_YET_PAID = ["new", "bound", "submitting"]
HELD_TYPES = ("native", "credit_alphanum4", "credit_alphanum12")  # not pool shares


def low_balance_floors(settings: Settings) -> dict[str, int]:
    """LEDGER_CHAIN_LOW_BALANCE in minor units, each a payout asset's."""
    floors = {}
    for asset, amount in settings.low_balance_floors.items():
        if asset not in settings.payout_assets:
            raise SettingsError(f"LEDGER_CHAIN_LOW_BALANCE: {asset} is not a payout asset (LEDGER_STELLAR_ASSETS)")
        try:
            floors[asset] = LedgerAsset.parse(asset).parse_amount(amount, allow_zero=True)
        except LedgerError as exc:
            raise SettingsError(f"LEDGER_CHAIN_LOW_BALANCE: {asset}={amount}: {exc.detail}") from None
    return floors


class BalanceWatch:
    def __init__(self, settings: ChainSettings, store: ThreadConnections, books: Books, horizon: Server) -> None:
        """``store``: the worker's tables (``chain_payouts``)."""
        self.books = books
        self.store = store
        self.address = settings.keys.distribution.public_key
        self.assets = {ledger_asset: asset_key(asset) for ledger_asset, asset in settings.assets.items()}
        self.floors = settings.low_balance_floors
        self.every = settings.balance_seconds
        self.horizon = horizon

    def look(self) -> dict[str, bool]:
        """Judge every payout asset once; whether the account is low in each."""
        held = self._held()
        needed = self._needed()
        lows = {}
        for asset, key in self.assets.items():
            balance, need, floor = held.get(key, 0), needed.get(asset, 0), self.floors.get(asset, 0)
            low = lows[asset] = is_low(balance, need, floor)
            if self.books.judge_distribution_balance(asset, self.address, balance, need, floor):
                log.warning(
                    "distribution account low" if low else "distribution account recovered",
                    extra={"asset": asset, "balance": balance, "needed": need, "floor": floor},
                )
            metrics.distribution_balance().labels(asset).set(balance / STROOPS)
            metrics.distribution_needed().labels(asset).set((need + floor) / STROOPS)
        return lows

    def _held(self) -> dict[str, int]:
        try:
            account = self.horizon.accounts().account_id(self.address).call()
        except BaseRequestError:
            metrics.HORIZON_ERRORS.labels("balances").inc()
            raise
        return {
            record_asset_key(b): stroops_of(b["balance"]) for b in account["balances"] if b["asset_type"] in HELD_TYPES
        }

    def _needed(self) -> dict[str, int]:
        rows = self.store.conn().execute(
            "SELECT asset, sum(stroops) AS needed FROM chain_payouts WHERE state = ANY(%s) GROUP BY asset",
            (NOT_YET_PAID,),
        )
        return {row["asset"]: int(row["needed"]) for row in rows}

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.look()
                except Exception:
                    log.exception("could not judge the distribution account's balances; trying again")
                stop.wait(self.every)
        finally:
            self.store.close()
