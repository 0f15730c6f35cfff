"""What the chain says about a payout's envelopes: the outcomes that settle a payout, and
the look-ups (by hash, in the channel's own history) that find them for a channel worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from stellar_sdk import Keypair, Server
from stellar_sdk.exceptions import NotFoundError

# Failures that prove the payout can never be paid as asked (the chain said so).
PERMANENT_OP_CODES = {
    "op_no_destination",
    "op_no_trust",
    "op_underfunded",
    "op_src_no_trust",
    "op_src_not_authorized",
    "op_not_authorized",
    "op_line_full",
    "op_malformed",
}
PERMANENT_TX_CODES = {"tx_bad_auth", "tx_bad_auth_extra", "tx_malformed", "tx_no_source_account"}


HISTORY_PAGE = 200  # Horizon's largest page
HISTORY_PAGES = 20  # how far back a channel's history is searched for a sequence number


class Outcome(Exception):
    """What the chain said about a payout's envelopes, found while submitting or looking up."""


class Applied(Outcome):
    def __init__(self, tx_hash: str, ledger: int) -> None:
        super().__init__(tx_hash)
        self.tx_hash, self.ledger = tx_hash, ledger


class Refused(Outcome):
    """Proof that no envelope of the payout applied or ever will: the payout fails."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unresolved(Exception):
    """The chain cannot say how a payout ended (its sequence number is used, the channel's
    history does not show by what): the payout is stuck for an operator, not rebuilt."""


class ChainLookups:
    """The look-ups of ``ChannelWorker`` that read the chain about one channel's envelopes."""

    horizon: Server
    channel: Keypair

    def _user_of_sequence(self, sequence: int) -> dict[str, Any]:
        """The channel's transaction that used ``sequence``, from the channel's own history
        (newest first); Unresolved if the history does not hold it."""
        channel = self.channel.public_key
        for record in self._channel_history():
            if record.get("source_account") != channel:
                continue  # a payment to it, not one of its own
            used = int(record["source_account_sequence"])
            if used == sequence:
                return record
            if used < sequence:  # newest first: it would have been here
                break
        raise Unresolved(f"sequence number {sequence} of channel {channel} is used; its history does not show by what")

    def _channel_history(self) -> Iterator[dict[str, Any]]:
        """The channel's transactions, failed ones too, newest first, at most
        ``HISTORY_PAGES`` pages of them."""
        cursor: str | None = None
        for _ in range(HISTORY_PAGES):
            call = self.horizon.transactions().for_account(self.channel.public_key)
            call = call.include_failed(True).order(desc=True).limit(HISTORY_PAGE)
            records = (call.cursor(cursor) if cursor else call).call()["_embedded"]["records"]
            yield from records
            if len(records) < HISTORY_PAGE:
                return
            cursor = records[-1]["paging_token"]

    @staticmethod
    def _raise_if_ours(record: dict[str, Any], versions: list[dict[str, Any]]) -> None:
        """Applied or Refused when the transaction that used the sequence number is one of
        the payout's envelopes; returns when it is another's."""
        if record["hash"] not in {v["tx_hash"] for v in versions}:
            return
        if record.get("successful"):
            raise Applied(record["hash"], int(record["ledger"]))
        raise Refused("tx_failed")  # applied as failed: the sequence number is used

    def _settled(self, versions: list[dict[str, Any]]) -> tuple[int, int]:
        """Raise Applied or Refused if any version is in the chain's history; otherwise
        return the latest ledger and its close time, read BEFORE the look-ups, so that a
        version found absent was absent from history up to that ledger (a version that
        applies later must be inside its bounds, so it cannot look dead at that ledger)."""
        latest = self._latest()
        found = []
        for version in versions:
            try:
                record = self.horizon.transactions().transaction(version["tx_hash"]).call()
            except NotFoundError:
                continue
            found.append((version, record))
        for version, record in found:  # a success wins over a failure of another version
            if record.get("successful"):
                raise Applied(version["tx_hash"], int(record["ledger"]))
        if found:
            raise Refused("tx_failed")  # applied as failed: the sequence number is used
        return latest

    def _latest(self) -> tuple[int, int]:
        root = self.horizon.root().call()
        closed_at = datetime.strptime(root["history_latest_ledger_closed_at"], "%Y-%m-%dT%H:%M:%SZ")
        return int(root["history_latest_ledger"]), int(closed_at.replace(tzinfo=UTC).timestamp())

    @staticmethod
    def _dead(version: dict[str, Any], latest: tuple[int, int]) -> bool:
        """Past its bounds on chain (and, the caller checked, not in history): it can never apply."""
        ledger, close_time = latest
        return ledger >= int(version["max_ledger"]) and close_time > int(version["max_time"])
