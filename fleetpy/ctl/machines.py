"""set-metadata: change a machine's metadata at runtime (fleetpy's addition to fleet).

Units follow the change: one whose MachineMetadata no longer holds moves to
another machine (or waits, saying why); one that was waiting for such a
machine is placed. The machine's fleetd keeps the change across its restarts
(not across a reboot: then fleetd's configured metadata counts again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from fleetpy.ctl.common import CtlEnv, CtlError, out, pass_env, run_with_client

if TYPE_CHECKING:
    from fleetpy.ctl.client import FleetClient
    from fleetpy.model.types import Machine


def find_machine(arg: str, machines: Sequence[Machine]) -> Machine:
    """The one machine whose ID starts with ``arg``, or whose public IP is ``arg``."""
    from fleetpy.ctl.files import BadInput
    from fleetpy.ctl.locate import with_id_prefix
    from fleetpy.ctl.state import machine_legend

    found = with_id_prefix(arg, machines) or [m for m in machines if m.public_ip == arg]
    if not found:
        raise BadInput(f"Unable to proceed: no machine matches {arg!r} "
                       "(fleetctl list-machines shows them)", plain=True)
    if len(found) > 1:
        by_id = {m.id: m for m in machines}
        shown = ", ".join(machine_legend(m.id, by_id, False) for m in found)
        raise BadInput(f"Unable to proceed: {len(found)} machines match {arg!r}: {shown}; "
                       "give more of the ID", plain=True)
    return found[0]


@click.command("set-metadata",
               short_help="Set or remove metadata of a machine; units follow the change")
@click.option("--remove", "-r", "remove", multiple=True, metavar="KEY",
              help="Remove this key (repeatable).")
@click.argument("machine")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE...]")
@pass_env
def set_metadata(env: CtlEnv, machine: str, pairs: tuple[str, ...],
                 remove: tuple[str, ...]) -> None:
    """Set or remove metadata of MACHINE (an ID prefix or its IP) at runtime.

    Units whose MachineMetadata no longer matches move elsewhere; units waiting
    for such a machine are placed. The machine's fleetd keeps the change until
    its machine reboots.

    \b
        fleetctl set-metadata 4f4a4289 region=us-east disk=ssd
        fleetctl set-metadata 172.17.8.102 --remove disk
    """
    from fleetpy.model.metadata import InvalidMetadata, MetadataChange, parse_assignments

    try:
        change = MetadataChange.make(parse_assignments(pairs), list(remove))
    except InvalidMetadata as e:
        raise CtlError(str(e)) from None

    async def action(client: FleetClient) -> int:
        from fleetpy.ctl.state import format_metadata, machine_legend

        target = find_machine(machine, await client.list_machines())
        changed = await client.set_machine_metadata(target.id, change)
        if changed is None:
            raise CtlError(f"machine {target.id[:8]}... left the cluster; metadata not set")
        legend = machine_legend(changed.id, {changed.id: changed}, False)
        out(f"Machine {legend} metadata: {format_metadata(changed.metadata) or '-'}")
        return 0

    run_with_client(env, action)


COMMANDS: list[click.Command] = [set_metadata]
