"""The channel workers: payouts out to Stellar, each paid at most once and ended one way.

Every payout goes through states kept in PostgreSQL (``chain_payouts``), and every
envelope it signs is stored (``chain_envelopes``) before it is submitted, so after any
crash the worker knows every transaction that might be on chain for a payout.

The rule that keeps a payout from being paid twice: all envelopes of a payout use the
same source account (its channel) and the same sequence number, so at most one of
them can ever apply; a new envelope is built only when Horizon's latest ledger and
close time are past the bounds of every earlier one and none of their hashes is known
(then none of them can apply any more). A look-up by hash that answers 404 proves
nothing on its own (a lagging node behind a load balancer, pruned history): before a
new envelope is built, the channel's sequence number is read, and once it has passed
the payout's number, the channel's own transaction history must show which
transaction used it. Ours settles the payout; another's frees it to take a new
number; none found leaves the payout stuck for an operator, never rebuilt. A payout
is failed (its pending transfer voided) only on an answer that proves no envelope of
it applied: a transaction that failed on chain (it used the sequence number), or one
refused before applying while the others are dead too and their number unused by them.

A channel serves one payout at a time, from binding to the end, and then re-reads
its sequence number from Horizon; each channel has its own thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from stellar_sdk import Account as StellarAccount
from stellar_sdk import Keypair, Server, TransactionBuilder, TransactionEnvelope
from stellar_sdk.exceptions import BadRequestError, BadResponseError, BaseRequestError

from chain.config import ChainSettings
from chain.kill_switch import KillSwitch
from chain.lookups import PERMANENT_OP_CODES, PERMANENT_TX_CODES, Applied, ChainLookups, Refused, Unresolved
from chain.runs import run_hold
from chain.stellar import chain_amount, horizon_client
from chain.store import REFUSED, ChainStore, fields_differing
from commands.application import Books
from ledger.errors import LedgerError
from ledger.payout_runs import CANCELLED, PAUSED
from ledger.payouts import MAX_CHAIN_AMOUNT
from ledger.transfers import PENDING
from runtime import metrics

log = logging.getLogger(__name__)


class NotPayable(Exception):
    """The event store does not vouch for the payout as the worker holds it: nothing is
    signed, and the payout is refused for good."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def channel_horizon(url: str) -> Server:
    """A channel's Horizon client: a submission may wait out a ledger close or two (10 s)."""
    return horizon_client(url, post_timeout=10)


class ChannelWorker(ChainLookups):
    """Drives one payout at a time through its states on one channel account."""

    def __init__(
        self,
        settings: ChainSettings,
        store: ChainStore,
        books: Books,
        horizon: Server,
        channel: Keypair,
        kill: KillSwitch,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.books = books
        self.channel = channel
        self.kill = kill
        self.clock = clock
        self.horizon = horizon

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.work_once():
                    stop.wait(0.1)
            except Exception:
                log.exception("chain worker step failed; retrying", extra={"channel": self.channel.public_key})
                stop.wait(1.0)

    def work_once(self) -> bool:
        """Advance this channel's payout (or take the next); False when there is none."""
        if not self.store.hold_channel(self.channel.public_key):
            log.warning("another worker drives this channel; waiting", extra={"channel": self.channel.public_key})
            time.sleep(1.0)
            return False
        payout = self.store.open_payout(self.channel.public_key) or self.store.bind_next(self.channel.public_key)
        if payout is None:
            return False
        now = self._now()
        if payout["next_attempt_at"] > now:
            time.sleep(min(0.2, (payout["next_attempt_at"] - now).total_seconds()))
            return True
        try:
            self.advance(payout)
        except (BaseRequestError, psycopg.Error, LedgerError) as exc:
            # Horizon or a database unreachable, a channel missing on chain: the payout
            # waits and counts the attempt, so one that never moves is reported stuck.
            log.exception("payout step failed", extra={"payout": payout["payout_id"]})
            if isinstance(exc, BaseRequestError):
                metrics.HORIZON_ERRORS.labels("payout").inc()
            fresh = self.store.open_payout(self.channel.public_key)
            if fresh is not None and fresh["payout_id"] == payout["payout_id"]:
                self._retry_later(fresh, fresh["attempts"] + 1, f"{type(exc).__name__}: {exc}"[:200])
        return True

    def advance(self, payout: dict[str, Any]) -> None:
        state = payout["state"]
        if state in ("applied", "rejected"):
            return self._tell_ledger(payout)
        try:
            cancel = self._cancel_reason(payout)
            if state == "bound":
                if int(payout["stroops"]) > MAX_CHAIN_AMOUNT:  # taken in before requests were checked
                    raise Refused("amount_exceeds_chain_limit")  # nothing was ever signed
                if payout["asset"] not in self.settings.assets:  # the API maps an asset this worker does not
                    raise Refused(f"asset_not_on_chain: {payout['asset']} is not mapped to a Stellar asset here")
                if cancel is not None:
                    raise Refused(cancel)  # nothing was ever signed
                held = run_hold(self.books, payout["payout_id"])
                if held == PAUSED:  # back in line, and the run's payouts left alone until it is resumed
                    self.store.unbind_paused(payout["payout_id"])
                    return None
                if held == CANCELLED:
                    raise Refused("run cancelled")  # nothing was ever signed
                payout = self._new_envelope(payout, sequence=None)
            if cancel is not None:  # never submitted again: it ends when the chain shows how
                self._refuse_if_never_paid(self.store.envelopes(payout["payout_id"]), cancel, latest_refused=False)
                return self._retry_later(payout, payout["attempts"], "cancel requested; its envelopes may still apply")
            self._submit(payout)
        except Applied as applied:
            payout = self.store.update(
                payout["payout_id"], state="applied", tx_hash=applied.tx_hash, ledger=applied.ledger
            )
            self.kill.passed("recorded")
            self._tell_ledger(payout)
        except Refused as refused:
            payout = self.store.update(payout["payout_id"], state="rejected", reason=refused.reason)
            self.kill.passed("recorded")
            self._tell_ledger(payout)
        except NotPayable as refused:
            self._refuse(payout, refused.reason)
        except Unresolved as unresolved:
            fresh = self.store.open_payout(self.channel.public_key) or payout
            self._retry_later(fresh, fresh["attempts"], str(unresolved), stuck_now=True)

    def _cancel_reason(self, payout: dict[str, Any]) -> str | None:
        """The failure reason for a payout an operator asked to cancel, if one did."""
        record = self.books.payout_record(payout["payout_id"])
        if record is None or record.cancel_requested is None:
            return None
        return f"cancelled: {record.cancel_requested}"[:500]

    # Steps ---------------------------------------------------------------------------

    def _new_envelope(self, payout: dict[str, Any], sequence: int | None) -> dict[str, Any]:
        """Sign and store an envelope; ``sequence`` None takes the channel's next one.
        Raises NotPayable, signing nothing, unless the event store still vouches for the payout."""
        self._check_payable(payout)
        root = self.horizon.root().call()
        latest, now = int(root["history_latest_ledger"]), int(self.clock())
        if sequence is None:
            sequence = self.horizon.load_account(self.channel.public_key).sequence + 1
        versions = self.store.envelopes(payout["payout_id"])
        asset = self.settings.assets[payout["asset"]]
        builder = TransactionBuilder(
            StellarAccount(self.channel.public_key, sequence - 1), self.settings.passphrase, self.settings.base_fee
        )
        builder.append_payment_op(
            payout["destination"],
            asset,
            chain_amount(int(payout["stroops"])),
            source=self.settings.keys.distribution.public_key,
        )
        max_time = now + self.settings.tx_timeout_seconds
        max_ledger = latest + self.settings.ledger_window
        builder.add_time_bounds(0, max_time).set_ledger_bounds(0, max_ledger)
        if payout["memo"]:
            builder.add_text_memo(payout["memo"])
        envelope = builder.build()
        envelope.sign(self.channel)
        if self.settings.keys.distribution.public_key != self.channel.public_key:
            envelope.sign(self.settings.keys.distribution)
        stored = self.store.store_envelope(
            payout,
            {
                "tx_hash": envelope.hash_hex(),
                "payout_id": payout["payout_id"],
                "version": len(versions) + 1,
                "channel": self.channel.public_key,
                "sequence": sequence,
                "max_ledger": max_ledger,
                "max_time": max_time,
                "envelope_xdr": envelope.to_xdr(),
            },
        )
        self.kill.passed("stored")
        return stored

    def _check_payable(self, payout: dict[str, Any]) -> None:
        """The last look before money moves, taken every time an envelope is signed: the
        event store has this payout, with the account, amount, asset, destination and
        memo the worker is about to pay, not ended, and its transfer still pending."""
        record = self.books.payout_record(payout["payout_id"])
        if record is None:
            raise NotPayable("not in the event store")
        differing = fields_differing(payout, record)
        if differing:
            raise NotPayable(f"differs from the event store: {', '.join(differing)}")
        if record.resolved:
            raise NotPayable(f"already {record.state} in the event store")
        transfer = self.books.transfer_record(record.hold_id)
        if transfer is None or (transfer.kind, transfer.status, transfer.debit_account, transfer.pending_amount) != (
            "payout",
            PENDING,
            record.account,
            record.amount,
        ):
            raise NotPayable(f"its transfer {record.hold_id!r} is not pending for the payout")
        if record.asset not in self.settings.assets:
            raise NotPayable(f"{record.asset} is not mapped to a Stellar asset")

    def _refuse(self, payout: dict[str, Any], reason: str) -> None:
        """End a payout the worker must not pay (nor fail in the ledger: the ledger may
        not have it, or has already ended it), so that it is never tried again."""
        self.store.update(payout["payout_id"], state=REFUSED, reason=reason[:500])
        log.error(
            "payout refused: the event store does not vouch for it; nothing signed",
            extra={"payout": payout["payout_id"], "reason": reason},
        )

    def _submit(self, payout: dict[str, Any]) -> None:
        """Submit the payout's latest envelope; returns normally when the outcome is
        still unknown (the payout is retried later), raises Applied or Refused otherwise."""
        versions = self.store.envelopes(payout["payout_id"])
        current = versions[-1]
        attempts = payout["attempts"] + 1
        payout = self.store.update(payout["payout_id"], attempts=attempts)
        self._note(lambda: self.books.note_payout_attempt(payout["payout_id"], attempts, current["tx_hash"], None))
        metrics.PAYOUTS.labels("submitted").inc()
        error: str
        try:
            result = self.horizon.submit_transaction(
                TransactionEnvelope.from_xdr(current["envelope_xdr"], self.settings.passphrase),
                skip_memo_required_check=True,
            )
            self.kill.passed("submitted")
            raise Applied(result["hash"], int(result["ledger"]))
        except BadRequestError as exc:
            self.kill.passed("submitted")
            codes = (exc.extras or {}).get("result_codes", {})
            tx_code, op_codes = codes.get("transaction", ""), codes.get("operations") or []
            permanent_op = next((c for c in op_codes if c in PERMANENT_OP_CODES), None)
            if tx_code == "tx_failed" and permanent_op:
                raise Refused(permanent_op) from None  # applied as failed: the sequence number is used
            if tx_code in PERMANENT_TX_CODES:  # a refusal before applying proves nothing about earlier versions
                self._refuse_if_never_paid(versions, tx_code, latest_refused=True)
            error = tx_code or f"http {exc.status}"
        except (BadResponseError, BaseRequestError) as exc:
            self.kill.passed("submitted")
            error = f"{type(exc).__name__}: {getattr(exc, 'status', '')}".strip()
        # Unknown outcome: what the chain says about every version decides.
        latest = self._settled(versions)
        renewed = all(self._dead(v, latest) for v in versions)
        if renewed:
            self._new_envelope(payout, sequence=self._renewal_sequence(versions))
        self._retry_later(payout, attempts, error, at_once=renewed)

    def _renewal_sequence(self, versions: list[dict[str, Any]]) -> int:
        """The sequence number for a payout's next envelope, once every earlier version is
        dead and unknown by hash: its own while the channel has not used it; the channel's
        next when another transaction used it (then none of ours can ever apply). Raises
        Applied or Refused when the transaction that used it is ours (its look-up by hash
        answered 404 all the same), Unresolved when the history does not show it."""
        ours = int(versions[-1]["sequence"])
        chain_sequence = self.horizon.load_account(self.channel.public_key).sequence
        if chain_sequence < ours:
            return ours
        self._raise_if_ours(self._user_of_sequence(ours), versions)
        return chain_sequence + 1

    def _refuse_if_never_paid(self, versions: list[dict[str, Any]], reason: str, *, latest_refused: bool) -> None:
        """Raise Refused when the chain shows that no version applied nor ever can: none
        is known by hash, all are past their bounds (but the latest, when it was just
        refused before applying), and their sequence number was not used by one of
        them. Returns while that cannot be told yet."""
        latest = self._settled(versions)
        waiting = versions[:-1] if latest_refused else versions
        if not all(self._dead(v, latest) for v in waiting):
            return
        if waiting:
            ours = int(versions[-1]["sequence"])
            if self.horizon.load_account(self.channel.public_key).sequence >= ours:
                self._raise_if_ours(self._user_of_sequence(ours), versions)
        raise Refused(reason)

    def _retry_later(
        self, payout: dict[str, Any], attempts: int, error: str, *, at_once: bool = False, stuck_now: bool = False
    ) -> None:
        """Back off before the next attempt, but never so long that an envelope would
        die waiting (a new one goes out at once). ``stuck_now`` reports the payout stuck
        at once, with ``error`` as the reason (the chain cannot say how it ended; it is
        looked at again all the same; the ledger keeps a repeated reason once)."""
        ceiling = min(self.settings.max_backoff_seconds, self.settings.tx_timeout_seconds / 4)
        delay = 0.0 if at_once else min(ceiling, self.settings.backoff_seconds * 2 ** min(attempts, 10))
        delay *= random.uniform(0.5, 1.0)
        stuck = bool(payout["stuck"])
        if stuck_now or (attempts >= self.settings.stuck_after_attempts and not stuck):
            # Reported first, flagged after: a crash in between reports it again.
            reason = error if stuck_now else f"unresolved after {attempts} attempts (last: {error})"
            stuck = self._note(lambda: self.books.report_payout_stuck(payout["payout_id"], reason))
            metrics.PAYOUTS.labels("stuck").inc()
        self.store.update(
            payout["payout_id"],
            attempts=attempts,
            reason=error,
            stuck=stuck,
            next_attempt_at=self._now() + timedelta(seconds=delay),
        )
        log.warning(
            "payout outcome unknown; will look again",
            extra={"payout": payout["payout_id"], "attempts": attempts, "error": error},
        )

    def _tell_ledger(self, payout: dict[str, Any]) -> None:
        """Post or void its pending transfer; both are idempotent, so a crash before the
        state is written just repeats this. A payout the ledger does not have (taken in
        from a forged message before intake read the event store) is refused, not retried
        for ever."""
        if self.books.payout_record(payout["payout_id"]) is None:
            self._refuse(payout, f"not in the event store (chain state {payout['state']}, tx {payout['tx_hash']})")
            return
        if payout["state"] == "applied":
            self.books.confirm_payout(payout["payout_id"], payout["tx_hash"], int(payout["ledger"]))
            self.store.update(payout["payout_id"], state="confirmed")
            metrics.PAYOUTS.labels("confirmed").inc()
            log.info("payout confirmed", extra={"payout": payout["payout_id"], "tx_hash": payout["tx_hash"]})
        else:
            self.books.fail_payout(payout["payout_id"], payout["reason"] or "rejected")
            self.store.update(payout["payout_id"], state="failed")
            metrics.PAYOUTS.labels("failed").inc()
            log.info("payout failed", extra={"payout": payout["payout_id"], "reason": payout["reason"]})

    @staticmethod
    def _note(record: Callable[[], Any]) -> bool:
        """Progress reports to the ledger are informative: one that fails does not stop
        the payout. Returns whether it was recorded."""
        try:
            record()
            return True
        except LedgerError:
            log.exception("could not record payout progress in the ledger")
            return False
