"""Auditors' commands: the event stream exported, a trial balance, seals, and the full
verification of the store (hash chains, double entry, every rule) against the read model."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from entrypoints import bootstrap
from entrypoints.cli.common import load_settings, moment
from runtime.settings import Settings


@click.group()
def audit() -> None:
    """Auditors' tools: the event stream and balances recomputed from it."""


@audit.command("export")
@click.option("--after-position", type=int, default=0, show_default=True, help="Start after this position.")
@click.option("--to-position", type=int, default=None, help="Stop at this position (inclusive).")
@click.option("--from-time", default=None, help="RFC 3339; events recorded at or after it.")
@click.option("--to-time", default=None, help="RFC 3339; events recorded at or before it.")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default="-", help="File (default: stdout).")
def audit_export(
    after_position: int, to_position: int | None, from_time: str | None, to_time: str | None, output: str
) -> None:
    """The event stream as JSON lines: one CloudEvents object per event, as on Kafka."""
    from audit.stream import events, write_lines

    with bootstrap.event_store(load_settings()) as books:
        stream = events(
            books,
            after_position=after_position,
            to_position=to_position,
            from_time=moment(from_time),
            to_time=moment(to_time),
        )
        with click.open_file(output, "w") as out:
            count = write_lines(stream, out)
    click.echo(f"exported {count} events", err=True)


@audit.command("trial-balance")
@click.option("--as-of-position", type=int, default=None, help="Balances after this position.")
@click.option("--as-of", "as_of", default=None, help="RFC 3339: balances as of this time.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--from-file", type=click.Path(exists=True, dir_okay=False), default=None, help="An export to replay.")
def audit_trial_balance(as_of_position: int | None, as_of: str | None, fmt: str, from_file: str | None) -> None:
    """Every account's posted and pending balances per asset, with totals that net to zero.

    Exits 1 when an asset's totals do not net to zero."""
    from audit.stream import events, read_lines
    from audit.trial_balance import trial_balance

    settings = load_settings()
    if from_file:
        # An export does not say where writes end: cut at exactly this position or time.
        result = trial_balance(read_lines(Path(from_file)), to_position=as_of_position, to_time=moment(as_of))
    else:
        with bootstrap.event_store(settings) as books:
            result = trial_balance(events(books, to_position=as_of_position, to_time=moment(as_of)))
    if fmt == "json":
        click.echo(json.dumps(result.report(), indent=2))
    else:
        result.write_csv(sys.stdout)
    unbalanced = {asset: t for asset, t in result.totals().items() if t != (0, 0)}
    if unbalanced:
        click.echo(f"NOT BALANCED: {unbalanced}", err=True)
        sys.exit(1)


@audit.command("seal")
def audit_seal() -> None:
    """Seal now: append a seal over every stream's head, if anything was written since the last."""
    from audit.sealer import SealBroken, Sealer

    settings = load_settings()
    with bootstrap.event_store(settings, actor="service:sealer") as books:
        try:
            position = Sealer(books, settings.require("database_url")).seal()
        except SealBroken as exc:
            raise click.ClickException(str(exc)) from None
    click.echo("nothing written since the last seal" if position is None else f"sealed at position {position}")


def _expected_seal(_ctx: Any, _param: Any, values: tuple[str, ...]) -> list[tuple[int, str]]:
    seals = []
    for value in values:
        number, sep, root = value.partition(":")
        if not sep or not number.isdigit() or len(root) != 64:
            raise click.BadParameter(f"{value!r} is not SEAL:ROOT (a seal number and its 64-hex-digit root)")
        seals.append((int(number), root.lower()))
    return seals


@audit.command("verify")
@click.option("--as-of-position", type=int, default=None, help="Stop at the end of the write at this position.")
@click.option("--as-of-time", default=None, help="RFC 3339: stop at the last write recorded by then.")
@click.option("--from-file", type=click.Path(exists=True, dir_okay=False), default=None, help="Replay an export.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True), help="Write a JSON report.")
@click.option(
    "--expect-seal",
    multiple=True,
    callback=_expected_seal,
    help="SEAL:ROOT of a seal kept from earlier (a report, the Kafka topic); repeatable.",
)
@click.option("--read-model/--no-read-model", default=True, help="Compare balances with MongoDB (live store only).")
@click.option(
    "--read-model-wait", type=float, default=10.0, show_default=True, help="Seconds to wait for the projector."
)
def audit_verify(
    as_of_position: int | None,
    as_of_time: str | None,
    from_file: str | None,
    report_path: str | None,
    expect_seal: list[tuple[int, str]],
    read_model: bool,
    read_model_wait: float,
) -> None:
    """Replay the event store (or an export) and check it: hash chains and seals, double
    entry, limits, pending transfers resolved once, ids used once; then compare with the read models.

    Reads with a read-only connection (LEDGER_AUDIT_DATABASE_URL if set: a read-only role
    or a replica). Exits 1 when anything is found."""
    from tqdm import tqdm

    from audit.rows import file_pages, read_ahead, store_head, store_pages_at
    from audit.verify import Verifier, report

    settings = load_settings()
    verifier = Verifier(to_position=as_of_position, to_time=moment(as_of_time))
    started = time.monotonic()
    drift = None
    total = None
    if from_file:
        source = f"file {from_file}"
        path = Path(from_file)
        open_pages: Callable[[str], Iterator[Any]] = lambda shape: read_ahead(file_pages(path, shape))
    else:
        url = settings.audit_database_url or settings.require("database_url")
        source = "event store"
        total = head = store_head(url)
        open_pages = lambda shape: read_ahead(store_pages_at(url, shape, head=head))
    with tqdm(total=total, unit="ev", unit_scale=True, desc="verify", file=sys.stderr, disable=None) as progress:
        try:
            verifier.run_parallel(open_pages, progress)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    elapsed = time.monotonic() - started
    verifier.check_expected_seals(expect_seal)
    findings = None
    if read_model and not from_file and as_of_position is None and as_of_time is None:
        drift, findings = _read_model_drift(settings, verifier, read_model_wait)
    result = report(verifier, source=source, elapsed=elapsed, drift=findings)
    if report_path:
        Path(report_path).write_text(json.dumps(result, indent=2) + "\n")
    _print_verification(result, drift)
    if not result["ok"]:
        sys.exit(1)


def _read_model_drift(settings: Settings, verifier: Any, wait: float) -> Any:
    from audit.drift import read_model_drift

    with bootstrap.read_model(settings) as generations:
        return read_model_drift(verifier, generations.active_database(), wait_seconds=wait)


def _print_verification(result: dict[str, Any], drift: Any) -> None:
    seals = result["seals"]
    click.echo(
        f"replayed {result['events']} events (positions {result['first_position']} to {result['last_position']}, "
        f"{result['streams']} streams) from the {result['source']} in {result['elapsed_seconds']} s "
        f"({result['events_per_second']} events/s)"
    )
    last = seals["last"]
    if last:
        click.echo(
            f"seals: {seals['checked']} checked; the last, seal {last['seal']} at position {last['position']}, "
            f"has root {last['root']}; {seals['events_after_last_seal']} events after it rest on the hash chains alone"
        )
    else:
        click.echo("seals: none yet; every event rests on the hash chains alone")
    for asset, total in result["totals"].items():
        click.echo(f"{asset}: posted nets to {total['posted']}, pending to {total['pending']}")
    if drift is not None:
        click.echo(f"read model: {drift.compared} accounts compared, {drift.moved_since} moved on since the replay")
    for finding in result["findings"]:
        at = f" at position {finding['position']}" if finding["position"] is not None else ""
        click.echo(f"FINDING {finding['kind']}: {finding['subject']}{at}: {finding['detail']}")
    click.echo("OK: nothing found" if result["ok"] else f"{len(result['findings'])} findings")


COMMANDS = (audit,)
