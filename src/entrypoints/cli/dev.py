"""The development stack's commands: `ledger up` (every server and service, supervised) and
the Horizon simulator. The only place the CLI imports ``devstack``, inside the commands,
so a production image without it runs every other command (setup.cfg's contract says so).
"""

from __future__ import annotations

import subprocess
import sys

import click

from entrypoints.cli.common import load_settings, log, ready, stop_on_signals


@click.command()
@click.option("--fresh", is_flag=True, help="Delete the data directory first.")
def up(fresh: bool) -> None:
    """Start the whole system (embedded servers unless URLs are set) until Ctrl-C."""
    import psycopg

    from devstack.supervisor import AlreadyRunning, Stack, install_signal_handlers

    stack = Stack(load_settings(discover=False), fresh=fresh)
    install_signal_handlers(stack)
    try:
        code = stack.run()
    except KeyboardInterrupt:
        code = 130
    except (AlreadyRunning, RuntimeError, TimeoutError, subprocess.CalledProcessError, psycopg.OperationalError) as exc:
        # Start-up failures (a port in use, a server that would not start, a database
        # that cannot be reached) are reported plainly; everything already started has
        # been stopped by then.
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@click.command("horizon-sim")
@click.option("--port", type=int, default=None, help="Default: LEDGER_EMBEDDED_HORIZON_PORT.")
@click.option("--close-seconds", type=float, default=1.0, show_default=True, help="Time between ledgers.")
def horizon_sim(port: int | None, close_seconds: float) -> None:
    """Run the Horizon SIMULATOR (not a Stellar network: for offline runs and tests)."""
    from devstack.horizon_sim import Simulator

    settings = load_settings()
    stop = stop_on_signals()
    sim = Simulator(
        settings.host, port or settings.embedded_horizon_port, settings.stellar_network_passphrase, close_seconds
    ).start()
    log.info("horizon simulator serving", extra={"url": sim.url})
    ready(settings)
    stop.wait()
    sim.stop()


COMMANDS = (up, horizon_sim)
