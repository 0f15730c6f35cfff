"""The auditor's replay: every stored event, in order, checked without trusting anything
the ledger computed from it.

It reads the rows as stored (stream, version, topic, JSON state, hash) and folds them
itself: not through the domain's aggregates, not through the read models. Along the way
it checks, at every position:

- the hash chain of every stream, and every seal's Merkle root over the streams' heads;
- double entry: per asset, at the end of every write, posted and pending net to zero;
- no client account below its overdraft limit;
- every pending transfer resolved at most once, for the amount it holds;
- every transfer id used once, and every movement naming a transfer that exists.

The fold is written for speed (a million events in seconds): rows are plain tuples, the
state is decoded with orjson, and dispatch is one dict lookup on the topic.

The parts: ``rows`` (shapes and sources), ``chain_check``, ``book_check``; this module
runs both checks (the chain check in a child process) and writes the report.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from audit.book_check import BookCheck
from audit.chain_check import ChainCheck, ChainSummary
from audit.folds import Finding, SealSeen
from audit.rows import BOOKS, CHAIN, Pages
from ledger.money import Asset


class Verifier:
    """Both checks over the same rows: in one process (``run``), or the chain check in a
    child process reading its own copy of the rows (``run_parallel``: two cores)."""

    def __init__(self, to_position: int | None = None, to_time: datetime | None = None) -> None:
        self.chain = ChainCheck(to_position, to_time)
        self.books = BookCheck(to_position, to_time)
        self._chain: ChainSummary | None = None
        self.extra: list[Finding] = []

    def run(self, open_pages: Pages, progress: Any = None) -> None:
        """One check after the other, in this process."""
        self.chain.run(open_pages(CHAIN))
        self.books.run(open_pages(BOOKS), progress)
        self._chain = self.chain.summary()

    def run_parallel(self, open_pages: Pages, progress: Any = None) -> None:
        """``open_pages`` is called once in each process, for the rows of its check."""
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_chain_child, args=(self.chain, open_pages, send), name="verify-chain")
        child.start()
        send.close()
        try:
            self.books.run(open_pages(BOOKS), progress)
            outcome, value = receive.recv()
        except BaseException:
            child.terminate()
            raise
        finally:
            child.join()
        if outcome == "error":
            raise RuntimeError(f"the hash-chain check failed: {value}")
        self._chain = value

    @property
    def _summary(self) -> ChainSummary:
        if self._chain is None:
            raise RuntimeError("run the verifier first")
        return self._chain

    @property
    def findings(self) -> list[Finding]:
        raw = sorted(self._summary.raw + self.books.raw, key=lambda f: (f[1] is None, f[1] or 0))
        named = [Finding(kind, position, self.books.subject(stream), detail) for kind, position, stream, detail in raw]
        return named + self.extra

    @property
    def seals(self) -> list[SealSeen]:
        return self._summary.seals

    @property
    def streams(self) -> int:
        return self._summary.streams

    @property
    def after_seal(self) -> int:
        return self._summary.after_seal

    @property
    def events(self) -> int:
        return self.books.events

    @property
    def first_position(self) -> int | None:
        return self.books.first_position

    @property
    def last_position(self) -> int:
        return self.books.last_position

    @property
    def totals(self) -> dict[str, list[int]]:
        """Per asset: [posted, pending], credits minus debits over every account."""
        return {asset: [nets.posted, nets.pending] for asset, nets in self.books.totals.items()}

    def balances(self) -> dict[str, dict[str, int | str]]:
        """Every account's balances in minor units, by account id."""
        return {
            a.account_id: {
                "asset": a.asset,
                "posted_debits": a.posted_debits,
                "posted_credits": a.posted_credits,
                "pending_debits": a.pending_debits,
                "pending_credits": a.pending_credits,
            }
            for a in self.books.accounts.values()
        }

    def account_versions(self) -> dict[str, int]:
        return {a.account_id: a.version for a in self.books.accounts.values()}

    def check_expected_seals(self, expected: Iterable[tuple[int, str]]) -> None:
        """Seals an auditor kept from earlier (a report, the Kafka topic) must still be here."""
        seen = {s.number: s for s in self.seals}
        for number, root in expected:
            seal = seen.get(number)
            if seal is None:
                self.extra.append(Finding("seal_missing", None, "seals", f"seal {number} is not in the replay"))
            elif seal.root != root:
                detail = f"seal {number} has root {seal.root}, not {root}"
                self.extra.append(Finding("seal_mismatch", seal.position, "seals", detail))


def _chain_child(chain: ChainCheck, open_pages: Pages, send: Any) -> None:
    try:
        chain.run(open_pages(CHAIN))
        send.send(("ok", chain.summary()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        send.send(("error", f"{type(exc).__name__}: {exc}"))


def report(verifier: Verifier, *, source: str, elapsed: float, drift: list[Finding] | None = None) -> dict[str, Any]:
    findings = [*verifier.findings, *(drift or [])]
    last_seal = verifier.seals[-1] if verifier.seals else None
    accounts = []
    for account_id, b in sorted(verifier.balances().items(), key=lambda item: (str(item[1]["asset"]), item[0])):
        unit = Asset.parse(str(b["asset"]))
        accounts.append(
            {"account": account_id, "asset": b["asset"]}
            | {k: unit.format(int(v)) for k, v in b.items() if k != "asset"}
        )
    totals = {}
    for asset, (posted, pending) in sorted(verifier.totals.items()):
        unit = Asset.parse(asset)
        totals[asset] = {"posted": unit.format(posted), "pending": unit.format(pending)}
    return {
        "ok": not findings,
        "source": source,
        "events": verifier.events,
        "first_position": verifier.first_position,
        "last_position": verifier.last_position,
        "streams": verifier.streams,
        "elapsed_seconds": round(elapsed, 3),
        "events_per_second": round(verifier.events / elapsed) if elapsed > 0 else None,
        "seals": {
            "checked": len(verifier.seals),
            "last": None
            if last_seal is None
            else {"seal": last_seal.number, "position": last_seal.position, "root": last_seal.root},
            "events_after_last_seal": verifier.after_seal,
        },
        "read_model_compared": drift is not None,
        "findings": [f.as_dict() for f in findings],
        "totals": totals,
        "accounts": accounts,
    }
