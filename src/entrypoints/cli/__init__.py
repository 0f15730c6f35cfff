"""`ledger`: one command group; each subcommand builds what it needs (``bootstrap``) and
calls a service or a runner. The subcommands live beside this by audience: the services,
operators' tasks, auditors' tools, and the development stack (``ledger up``)."""

from __future__ import annotations

import click

from entrypoints.cli import audit, dev, operators, services
from entrypoints.cli.common import Group


@click.group(cls=Group)
def main() -> None:
    """An event-sourced double-entry payment ledger."""


for command in (*services.COMMANDS, *operators.COMMANDS, *audit.COMMANDS, *dev.COMMANDS):
    main.add_command(command)
