"""status and journal: systemd's view of a unit, on the machine that runs it.

As in fleet: ``systemctl status -l UNIT`` and ``journalctl --unit UNIT`` run
on the unit's machine over ssh (locally when that machine is this one); a
global unit's on every machine it is scheduled on, each under a heading.
The unit name is never read as an option (``systemctl status -l -- -.service``,
``journalctl --unit=-.service``) and is quoted for the remote shell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

from fleetpy.ctl.common import CtlEnv, out, pass_env, run_with_client

if TYPE_CHECKING:
    from fleetpy.ctl.client import FleetClient
    from fleetpy.model.types import Machine

Located = list[tuple[str, list["Machine"], bool]]  # unit, machines, global


def _locate(env: CtlEnv, args: Sequence[str], verb: str) -> tuple[Located, dict[str, Machine]]:
    from fleetpy.api.snapshot import read_snapshot
    from fleetpy.ctl import files
    from fleetpy.ctl.locate import unit_machines
    from fleetpy.ctl.state import view

    located: Located = []
    machines: dict[str, Machine] = {}

    async def action(client: FleetClient) -> int:
        names = [n for _, n in files.dedupe(args)]
        snap = await read_snapshot(client, names)
        machines.update(snap.machines)
        for name in names:  # every unit checked before anything runs
            located.append((name, unit_machines(name, snap, verb), view(snap, name).is_global))
        return 0

    run_with_client(env, action)
    return located, machines


def status_command(name: str) -> list[str]:
    """``systemctl status`` of one unit: options end before the name."""
    return ["systemctl", "status", "-l", "--no-pager", "--", name]


def journal_command(name: str, lines: int, output: str, follow: bool, sudo: bool) -> list[str]:
    """``journalctl`` of one unit: the name is --unit's value, never an option."""
    return [*(["sudo"] if sudo else []), "journalctl", "--no-pager", f"--lines={lines}",
            f"--output={output}", *(["--follow"] if follow else []), f"--unit={name}"]


def _run_all(env: CtlEnv, located: Located, machines: dict[str, Machine],
             command: Callable[[str], Sequence[str]], tty: bool = False) -> None:
    from fleetpy.ctl.remote import run_on
    from fleetpy.ctl.state import machine_legend

    assert env.settings is not None
    code = 0
    first = True
    for name, hosts, is_global in located:
        for machine in hosts:
            if not first:
                out("")  # systemctl status separates units with a blank line
            first = False
            if is_global:
                out(f"=== {name} on {machine_legend(machine.id, machines, False)} ===")
            code = code or run_on(env.settings, machine, command(name), tty=tty)
    if code:
        click.get_current_context().exit(code)


@click.command()
@click.argument("units", nargs=-1, required=True, metavar="UNIT...")
@pass_env
def status(env: CtlEnv, units: tuple[str, ...]) -> None:
    """Output the status of one or more units in the cluster

    Runs `systemctl status -l UNIT` on the unit's machine (over ssh unless it
    is this one); a global unit's status comes from every machine running it.
    The exit status is systemctl's (3: not active).
    """
    located, machines = _locate(env, units, "status")
    _run_all(env, located, machines, status_command)


@click.command()
@click.option("--lines", "-n", type=click.IntRange(min=0), default=10, show_default=True,
              help="Number of recent log lines to return")
@click.option("--follow", "-f", is_flag=True,
              help="Continuously print new entries as they are appended to the journal.")
@click.option("--sudo", is_flag=True, help="Execute journal command with sudo")
@click.option("--output", "-o", default="short", show_default=True,
              help="Output mode (journalctl's --output: short, cat, json, verbose...)")
@click.argument("unit", metavar="UNIT")
@pass_env
def journal(env: CtlEnv, unit: str, lines: int, follow: bool, sudo: bool, output: str) -> None:
    """Print the journal of a unit in the cluster to stdout

    Runs `journalctl --unit UNIT` on the unit's machine (over ssh unless it is
    this one); ^C ends --follow.
    """
    import sys

    located, machines = _locate(env, [unit], "journal")
    tty = follow and sys.stdin.isatty() and sys.stdout.isatty()  # ^C/hangup end it remotely
    _run_all(env, located, machines,
             lambda name: journal_command(name, lines, output, follow, sudo), tty=tty)


COMMANDS: list[click.Command] = [status, journal]
