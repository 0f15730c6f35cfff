"""The chain worker's tables: its payouts and their states, the envelopes it signed, its
cursors and dead letters; every method is one short transaction."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from chain.connections import ThreadConnections
from contracts.dead_letters import DeadLetter
from ledger.payouts import Payout

OPEN_STATES = ("bound", "submitting", "applied", "rejected")


# The end for a payout the worker would not sign for: it is not in the event store as
# taken in, or is no longer waiting to be paid. Never retried; the reason says why.
REFUSED = "refused"
INTAKE_CONSUMER = "chain-intake"


SET_CURSOR = (
    "INSERT INTO chain_cursors (name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
)


class ChainStore(ThreadConnections):
    """The worker's tables; every method is one short transaction."""

    def take_in(
        self,
        payouts: list[dict[str, Any]],
        dead_letters: list[DeadLetter],
        offsets: dict[str, str],
        runs: Collection[str] = (),
    ) -> int:
        """Record new payouts, the messages set aside, the payout runs named (to look at
        again), and the Kafka offsets after them, together: a redelivered event finds its
        payout (or its dead letter) there and changes nothing."""
        conn = self.conn()
        with conn.transaction():
            for run_id in sorted(runs):
                conn.execute(
                    "INSERT INTO chain_runs (run_id) VALUES (%s) ON CONFLICT (run_id) DO UPDATE SET ended = false",
                    (run_id,),
                )
            added = 0
            for p in payouts:
                cur = conn.execute(
                    "INSERT INTO chain_payouts (payout_id, account, asset, stroops, destination, memo) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (payout_id) DO NOTHING",
                    (p["payout"], p["account"], p["asset"], int(p["amount"]), p["destination"], p["memo"]),
                )
                added += cur.rowcount
            for letter in dead_letters:
                conn.execute(
                    'INSERT INTO dead_letters (consumer, topic, topic_id, partition, "offset", reason, detail, '
                    "headers, value, value_size) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (
                        INTAKE_CONSUMER,
                        letter.topic,
                        letter.topic_id,
                        letter.partition,
                        letter.offset,
                        letter.reason,
                        letter.detail,
                        Jsonb(letter.headers),
                        letter.value,
                        letter.value_size,
                    ),
                )
            for name, value in offsets.items():
                conn.execute(SET_CURSOR, (name, value))
        return added

    def cursors(self, prefix: str) -> dict[str, str]:
        rows = self.conn().execute("SELECT name, value FROM chain_cursors WHERE name LIKE %s", (prefix + "%",))
        return {row["name"]: row["value"] for row in rows}

    def open_payout(self, channel: str) -> dict[str, Any] | None:
        """The payout this channel is in the middle of (after a crash), if any."""
        return (
            self.conn()
            .execute(
                "SELECT * FROM chain_payouts WHERE channel = %s AND state = ANY(%s) ORDER BY created_at LIMIT 1",
                (channel, list(OPEN_STATES)),
            )
            .fetchone()
        )

    def stuck_count(self) -> float:
        """Payouts reported stuck and not yet resolved (read when metrics are scraped); NaN
        while the database cannot say, so the rest of /metrics is still served."""
        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM chain_payouts WHERE stuck AND state NOT IN ('confirmed', 'failed')"
                ).fetchone()
        except psycopg.Error:
            return math.nan
        return float(row[0]) if row else 0.0

    def hold_channel(self, channel: str) -> bool:
        """Whether this thread's session holds the channel's advisory lock (taken if free):
        two workers started on the same keys must not drive one channel."""
        conn = self.conn()
        if getattr(self.local, "locked", None) == (id(conn), channel):
            return True
        row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS held", (channel,)).fetchone()
        if row is not None and row["held"]:
            self.local.locked = (id(conn), channel)
            return True
        return False

    def bind_next(self, channel: str) -> dict[str, Any] | None:
        return (
            self.conn()
            .execute(
                "UPDATE chain_payouts SET state = 'bound', channel = %s, updated_at = now() WHERE payout_id = ("
                "  SELECT payout_id FROM chain_payouts p WHERE state = 'new' AND NOT EXISTS ("
                "    SELECT 1 FROM chain_runs r WHERE r.state = 'paused' AND position('$' IN p.payout_id) > 0"
                "      AND r.run_id = split_part(p.payout_id, '$', 1))"  # a paused run's payouts wait
                "  ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1"
                ") RETURNING *",
                (channel,),
            )
            .fetchone()
        )

    def unbind_paused(self, payout_id: str) -> None:
        """A payout whose run the event store shows paused, though ``chain_runs`` did not
        yet: back to new, and the run marked paused, so no channel binds its payouts
        again until the run driver sees it resumed."""
        conn = self.conn()
        with conn.transaction():
            conn.execute(
                "UPDATE chain_payouts SET state = 'new', channel = NULL, updated_at = now() WHERE payout_id = %s",
                (payout_id,),
            )
            conn.execute(
                "INSERT INTO chain_runs (run_id, state) VALUES (split_part(%s, '$', 1), 'paused') "
                "ON CONFLICT (run_id) DO UPDATE SET state = 'paused', ended = false, updated_at = now()",
                (payout_id,),
            )

    def envelopes(self, payout_id: str) -> list[dict[str, Any]]:
        return (
            self.conn()
            .execute("SELECT * FROM chain_envelopes WHERE payout_id = %s ORDER BY version", (payout_id,))
            .fetchall()
        )

    def store_envelope(self, payout: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
        """The signed envelope, stored before it is submitted (the one step that must precede submission)."""
        conn = self.conn()
        with conn.transaction():
            conn.execute(
                "INSERT INTO chain_envelopes (tx_hash, payout_id, version, channel, sequence, max_ledger, max_time, "
                "envelope_xdr) VALUES (%(tx_hash)s, %(payout_id)s, %(version)s, %(channel)s, %(sequence)s, "
                "%(max_ledger)s, %(max_time)s, %(envelope_xdr)s)",
                envelope,
            )
            row = conn.execute(
                "UPDATE chain_payouts SET state = 'submitting', sequence = %s, tx_hash = %s, updated_at = now() "
                "WHERE payout_id = %s RETURNING *",
                (envelope["sequence"], envelope["tx_hash"], payout["payout_id"]),
            ).fetchone()
        return _present(row, payout["payout_id"])

    def update(self, payout_id: str, **changes: Any) -> dict[str, Any]:
        columns = ", ".join(f"{name} = %({name})s" for name in changes)
        row = (
            self.conn()
            .execute(
                f"UPDATE chain_payouts SET {columns}, updated_at = now() WHERE payout_id = %(payout_id)s RETURNING *",
                {**changes, "payout_id": payout_id},
            )
            .fetchone()
        )
        return _present(row, payout_id)

    def set_cursor(self, name: str, value: str) -> None:
        self.conn().execute(SET_CURSOR, (name, value))


def _present(row: dict[str, Any] | None, payout_id: str) -> dict[str, Any]:
    """A payout row an UPDATE ... RETURNING changed; none means it was never taken in."""
    if row is None:
        raise LookupError(f"payout {payout_id!r} is not in chain_payouts")
    return row


def fields_differing(payout: dict[str, Any], record: Payout) -> list[str]:
    """The fields of a worker's payout row that are not what the event store holds."""
    pairs = {
        "account": (payout["account"], record.account),
        "asset": (payout["asset"], record.asset),
        "amount": (int(payout["stroops"]), record.amount),
        "destination": (payout["destination"], record.destination),
        "memo": (payout["memo"], record.memo),
    }
    return [name for name, (ours, stored) in pairs.items() if ours != stored]
