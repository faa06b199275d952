"""cordon / uncordon: take a machine out of placement, and put it back.

``cordoned/<machine_id>`` (fleetpy.model.cordon) is durable: it outlives the
machine's fleetd restarts and its lease. The engine places no new unit on a
cordoned machine; units already there stay (``fleetctl drain`` moves them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fleetpy.ctl.common import CtlEnv, out, pass_env, run_with_client
from fleetpy.ctl.listing import known_machines

if TYPE_CHECKING:
    from fleetpy.ctl.client import FleetClient
    from fleetpy.model.cordon import Cordon
    from fleetpy.model.types import Machine


def who() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{socket.gethostname()}"


def now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def legend(machine: Machine) -> str:
    from fleetpy.ctl.state import machine_legend

    return machine_legend(machine.id, {machine.id: machine}, False)


async def resolve(client: FleetClient, arg: str) -> tuple[Machine, Cordon | None]:
    """The machine ``arg`` names (ID prefix or IP) and its cordon, if any."""
    import asyncio

    from fleetpy.ctl.machines import find_machine

    machines, cordons = await asyncio.gather(client.list_machines(), client.list_cordons())
    machine = find_machine(arg, known_machines(machines, cordons))
    return machine, cordons.get(machine.id)


@click.command("cordon", short_help="Place no new units on a machine (units there stay)")
@click.option("--reason", default="", help="Why (shown by the engine's log).")
@click.argument("machine")
@pass_env
def cordon(env: CtlEnv, machine: str, reason: str) -> None:
    """Place no new units on MACHINE (an ID prefix or its IP); units there stay.

    The mark survives fleetd restarts and the machine's lease; list-machines
    shows it in STATE. A unit that fits nowhere else waits, saying the machine
    is cordoned. Undo with fleetctl uncordon.
    """
    from fleetpy.model.cordon import Cordon

    async def action(client: FleetClient) -> int:
        target, current = await resolve(client, machine)
        if current is not None:
            out(f"Machine {legend(target)} already {current.state}")
            return 0
        await client.put_cordon(Cordon(target.id, by=who(), at=now_iso(), reason=reason))
        out(f"Machine {legend(target)} cordoned")
        return 0

    run_with_client(env, action)


@click.command("uncordon", short_help="Place units on a cordoned or draining machine again")
@click.argument("machine")
@pass_env
def uncordon(env: CtlEnv, machine: str) -> None:
    """Place units on MACHINE again (ends a cordon, and a drain: moved units stay
    where they went)."""

    async def action(client: FleetClient) -> int:
        target, _ = await resolve(client, machine)
        if await client.delete_cordon(target.id):
            out(f"Machine {legend(target)} uncordoned")
        else:
            out(f"Machine {legend(target)} was not cordoned")
        return 0

    run_with_client(env, action)


COMMANDS: list[click.Command] = [cordon, uncordon]
