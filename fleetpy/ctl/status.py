"""status and journal: systemd's view of a unit, on the machine that runs it.

fleet runs ``systemctl status -l UNIT`` / ``journalctl -u UNIT`` over SSH on
the unit's machine. fleetpy runs them when that machine is this one; for
another machine it says where the unit runs (SSH is not done yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from fleetpy.ctl.common import CtlEnv, err, pass_env, run_with_client

if TYPE_CHECKING:
    from fleetpy.ctl.client import FleetClient

MACHINE_ID_FILE = "/etc/machine-id"


def _local_machine_id() -> str | None:
    try:
        with open(MACHINE_ID_FILE) as f:
            return f.read().strip() or None
    except OSError:
        return None


async def _locate(client: FleetClient, args: Sequence[str]) -> list[tuple[str, str | None, str]]:
    """(name, machine id if local else None, legend) per unit; BadInput if it cannot be shown."""
    from fleetpy.api.snapshot import read_snapshot
    from fleetpy.ctl import files
    from fleetpy.ctl.state import machine_legend, view
    from fleetpy.model.types import TargetState

    names = [n for _, n in files.dedupe(args)]
    snap = await read_snapshot(client, names)
    local = _local_machine_id()
    found: list[tuple[str, str | None, str]] = []
    for name in names:
        v = view(snap, name)
        if v.record is None:
            raise files.BadInput(f"Unit {name} does not exist.", plain=True)
        if v.is_global:
            raise files.BadInput(
                f"Unable to get status for global unit {name}. Check the status on "
                "individual machines.", plain=True)
        if v.current is TargetState.INACTIVE or v.machine is None:
            raise files.BadInput(f"Unit {name} does not appear to be running.", plain=True)
        legend = machine_legend(v.machine, snap.machines, False)
        found.append((name, v.machine if v.machine == local else None, legend))
    return found


def _run_there(env: CtlEnv, args: Sequence[str], command: Sequence[str], what: str) -> None:
    import subprocess

    located: list[tuple[str, str | None, str]] = []

    async def action(client: FleetClient) -> int:
        located.extend(await _locate(client, args))
        return 0

    run_with_client(env, action)
    code = 0
    for name, local, legend in located:
        if local is None:
            err(f"Unit {name} runs on {legend}: run fleetctl {what} there "
                "(fleetpy does not reach other machines over SSH yet)")
            code = 1
            continue
        code = subprocess.run([*command, name], check=False).returncode or code
    if code:
        click.get_current_context().exit(code)


@click.command()
@click.argument("units", nargs=-1, required=True, metavar="UNIT...")
@pass_env
def status(env: CtlEnv, units: tuple[str, ...]) -> None:
    """Output the status of one or more units in the cluster"""
    _run_there(env, units, ["systemctl", "status", "-l", "--no-pager"], "status")


@click.command()
@click.option("--lines", "-n", type=click.IntRange(min=0), default=10, show_default=True,
              help="Number of recent log lines to return")
@click.option("--follow", "-f", is_flag=True, help="Continuously print new entries")
@click.argument("unit", metavar="UNIT")
@pass_env
def journal(env: CtlEnv, unit: str, lines: int, follow: bool) -> None:
    """Print the journal of a unit in the cluster to stdout"""
    command = ["journalctl", "--no-pager", f"--lines={lines}", *(["-f"] if follow else []), "-u"]
    _run_there(env, [unit], command, "journal")


COMMANDS: list[click.Command] = [status, journal]
