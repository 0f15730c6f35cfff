"""Operators' commands: the database, API keys, payout runs from a file, the event stream
on a terminal, and the read model's verify and rebuild."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from entrypoints import bootstrap
from entrypoints.cli.common import NothingDone, load_settings, stop_on_signals


@click.command("compose-secrets")
@click.option("--dir", "directory", default="secrets", show_default=True, help="Where compose.yaml reads them.")
def compose_secrets(directory: str) -> None:
    """Make the passwords and URLs compose.yaml mounts (0600; existing ones are kept)."""
    from runtime.compose_secrets import write_compose_secrets

    written = write_compose_secrets(Path(directory))
    click.echo(f"{len(written)} secret file(s) written in {directory}/ (never commit them)")


@click.group()
def db() -> None:
    """Event-store database tasks."""


@db.command("migrate")
@click.option("--writer-password-file", type=click.Path(exists=True, dir_okay=False), help="Let ledger_writer log in.")
@click.option("--reader-password-file", type=click.Path(exists=True, dir_okay=False), help="Let ledger_reader log in.")
def db_migrate(writer_password_file: str | None, reader_password_file: str | None) -> None:
    """Apply pending migrations (records what it applied; safe to run twice), as the
    schema's owner (LEDGER_MIGRATION_DATABASE_URL, else LEDGER_DATABASE_URL); then let the
    ledger's roles log in with the passwords in the files given."""
    from runtime.migrations import READER_ROLE, WRITER_ROLE, enable_logins, migrate

    settings = load_settings()
    url = settings.migration_database_url or settings.require("database_url")
    applied = migrate(url, settings.migrations_dir)
    click.echo(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    files = {WRITER_ROLE: writer_password_file, READER_ROLE: reader_password_file}
    passwords = {role: Path(f).read_text().strip() for role, f in files.items() if f}
    if passwords:
        enable_logins(url, passwords)
        click.echo(f"login enabled for {', '.join(sorted(passwords))}")


@click.group()
def keys() -> None:
    """API keys: every request to the command and query APIs needs one."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="read, accounts, transfers, deposits, payouts, metrics or admin; repeatable.",
)
@click.option(
    "--accounts",
    "accounts",
    multiple=True,
    help="Limit the key to accounts matching this pattern ('shop-42:*'); repeatable.",
)
@click.option("--credits-within-accounts", is_flag=True, help="A limited key may credit only its own accounts too.")
@click.option("--signed-only", is_flag=True, help="Refuse bearer use: only LEDGER-HMAC-SHA256 signed requests.")
def keys_create(
    name: str, scopes: tuple[str, ...], accounts: tuple[str, ...], credits_within_accounts: bool, signed_only: bool
) -> None:
    """Make a key; prints {"key_id", "secret", "token"} once (the secret is stored only as a hash)."""
    from auth.keys import KeyDefinitionError

    with bootstrap.key_store(load_settings()) as store:
        try:
            key, secret = store.create(
                name, scopes, accounts, credits_within_accounts=credits_within_accounts, signed_only=signed_only
            )
        except KeyDefinitionError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"key_id": key.key_id, "secret": secret, "token": f"{key.key_id}.{secret}"}))


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def keys_list(as_json: bool) -> None:
    """Every key, revoked ones too (never a secret)."""
    with bootstrap.key_store(load_settings()) as store:
        found = store.list()
    for key in found:
        info = key.describe()
        if as_json:
            click.echo(json.dumps(info))
        else:
            state = f"revoked {info['revoked_at']}" if key.revoked else "active"
            limits = f" accounts={','.join(key.accounts)}" if key.accounts else ""
            signed = " signed-only" if key.signed_only else ""
            click.echo(f"{key.key_id}  {key.name!r}  scopes={','.join(info['scopes'])}{limits}{signed}  {state}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: every API process refuses it within a few seconds."""
    with bootstrap.key_store(load_settings()) as store:
        key = store.revoke(key_id)
    if key is None:
        raise click.ClickException(f"no key {key_id!r}")
    click.echo(f"revoked {key_id} at {key.revoked_at.isoformat() if key.revoked_at else '?'}")


@click.group()
def payouts() -> None:
    """Payout runs from a shell, through the APIs (see README: Payout runs)."""


@payouts.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "run_id", default=None, help="The run's id (a CSV file needs one; JSON names its own).")
@click.option("--start", "start_it", is_flag=True, help="Start the run once it is stored.")
@click.option("--follow", is_flag=True, help="Show a progress bar until the run ends; exit 1 if any row failed.")
@click.option("--command-url", default=None, help="Default: the running stack's (run/state.json).")
@click.option("--query-url", default=None, help="Default: the running stack's.")
def payouts_run(
    file: Path, run_id: str | None, start_it: bool, follow: bool, command_url: str | None, query_url: str | None
) -> None:
    """Upload a payout run's file (CSV: id,account,amount,destination[,memo]; or JSON).

    The key is LEDGER_API_KEY, else the admin key `ledger up` made. A refused file lists
    every bad row; exit 2 when the run could not be sent or started."""
    import requests

    from entrypoints import run_client

    settings = load_settings()
    token = settings.api_key
    try:
        if command_url and query_url:
            key = token or run_client._read_key(settings.data_dir / "admin.key")
            apis = run_client.Apis(command_url.rstrip("/"), query_url.rstrip("/"), key)
        else:
            apis = run_client.Apis.of_stack(settings.data_dir, token)
        http = run_client.session(apis.token)
        run = run_client.upload(apis, http, file, run_id)
        click.echo(json.dumps(run))
        if start_it:
            run = run_client.start(apis, http, run["id"])
            click.echo(json.dumps(run))
        if not follow:
            return
        view = run_client.follow(apis, http, run, sys.stderr)
    except (run_client.RunFailed, requests.RequestException) as exc:
        raise NothingDone(str(exc)) from None
    click.echo(json.dumps(view))
    sys.exit(0 if view["state"] == "completed" and not view["failed"] else 1)  # failed: as the run completed


@click.command()
@click.option("--group", default="ledger-tail", show_default=True, help="Kafka consumer group.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest event when the group is new.")
@click.option("--checkpoints", is_flag=True, help="Show the relay's checkpoint messages too.")
@click.option("--max", "max_events", type=int, default=None, help="Stop after this many events.")
@click.option("--idle", type=float, default=None, help="Stop after this many seconds without an event.")
def tail(
    group: str, as_json: bool, from_beginning: bool, checkpoints: bool, max_events: int | None, idle: float | None
) -> None:
    """Follow the event stream and print it."""
    import time

    from confluent_kafka import Consumer

    from contracts.events import CHECKPOINT
    from contracts.validation import BadMessage, decode_headers
    from runtime.kafka import consumer_config

    settings = load_settings()
    stop = stop_on_signals()
    config = consumer_config(bootstrap.kafka(settings), group)
    config["auto.offset.reset"] = "earliest" if from_beginning else "latest"
    consumer = Consumer(config)
    consumer.subscribe([settings.kafka_topic])
    shown, last_event = 0, time.monotonic()
    try:
        while not stop.is_set() and (max_events is None or shown < max_events):
            if idle is not None and time.monotonic() - last_event > idle:
                break
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            try:  # anyone can produce to the topic: a malformed message is shown as such, not a crash
                headers = decode_headers(message)
                if headers.get("ce_type") == CHECKPOINT and not checkpoints:
                    continue
                event = _shown_event(headers, message.value())
            except (BadMessage, ValueError, RecursionError) as exc:
                click.echo(f"skipped a malformed message ({message.partition()}@{message.offset()}): {exc}", err=True)
                consumer.commit(message=message, asynchronous=True)
                continue
            if as_json:
                click.echo(json.dumps(event, separators=(",", ":")))
            else:
                click.echo(
                    f"{event['position']:>10} {event['time'] or '':32} {event['type'] or '':45} {event['subject'] or ''} {json.dumps(event['data'])}"
                )
            shown += 1
            last_event = time.monotonic()
            consumer.commit(message=message, asynchronous=True)
    finally:
        consumer.close()


def _shown_event(headers: dict[str, str], value: bytes | None) -> dict[str, Any]:
    """A message as `ledger tail` shows it; ValueError when it cannot be read."""
    return {
        "id": headers.get("ce_id"),
        "type": headers.get("ce_type"),
        "subject": headers.get("ce_subject"),
        "sequence": int(headers["ce_sequence"]) if "ce_sequence" in headers else None,
        "position": int(headers.get("ce_position", 0)),
        "time": headers.get("ce_time"),
        "keyid": headers.get("ce_ledgerkeyid"),
        "data": json.loads(value or b"{}"),
    }


@click.group()
def projections() -> None:
    """Read-model tasks."""


@projections.command("verify")
@click.option(
    "--wait", type=float, default=10.0, show_default=True, help="Seconds to wait for the projector to catch up."
)
def projections_verify(wait: float) -> None:
    """Recompute every account and transfer from the event store and compare with MongoDB.

    Prints each difference and exits non-zero when there is any. The system may keep
    running: an account written since the replay is counted as moved on, and the checks
    that need the whole read model at one moment are made when no account or transfer
    was written meanwhile.
    """
    from projectors.replay import compare_with_store

    settings = load_settings()
    with bootstrap.event_store(settings) as books, bootstrap.read_model(settings) as generations:
        expected, comparison = compare_with_store(books, generations.active_database(), wait_seconds=wait)
    click.echo(
        f"replayed the event store to position {expected.position}: {comparison.compared} accounts compared, "
        f"{comparison.moved_since} moved on since the replay"
    )
    if comparison.compared and not comparison.whole:
        click.echo(
            "accounts or transfers were written meanwhile, so transfers, entries and the per-asset sums were not compared"
        )
    for difference in comparison.differences:
        click.echo(f"DIFF {difference}")
    if comparison.differences:
        sys.exit(1)
    click.echo("no differences")


@projections.command("rebuild")
def projections_rebuild() -> None:
    """Replay the event store into a new read-model generation and switch to it.

    Queries keep being answered from the current generation until the switch; the
    projector (if running) pauses for a moment while it happens.
    """
    from tqdm import tqdm

    from projectors.rebuild import rebuild

    settings = load_settings()
    with (
        bootstrap.event_store(settings) as books,
        bootstrap.read_model(settings) as generations,
        tqdm(total=books.head_position(), unit="event", desc="replaying", disable=None) as bar,
    ):

        def progress(position: int, head: int) -> None:
            bar.total = max(bar.total or 0, head)
            bar.update(position - bar.n)

        generation = rebuild(books, generations, progress)
    click.echo(f"read model generation {generation} is active")


COMMANDS = (compose_secrets, db, keys, payouts, tail, projections)
