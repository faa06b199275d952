"""How fleetctl names a machine in its tables: ``4f4a4289.../172.17.8.101`` (pure).

Apart from fleetpy.ctl.state (which re-exports these) so that list-units and
list-machines do not load the unit-state views on their start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetpy.model.types import Machine


def machine_id_legend(machine_id: str, full: bool) -> str:
    """``4f4a4289...`` (or the whole id with ``full``)."""
    return machine_id if full else f"{machine_id[:8]}..."


def machine_legend(machine_id: str, machines: Mapping[str, Machine], full: bool) -> str:
    """``4f4a4289.../172.17.8.101``: short (or full) id, and the public IP when known."""
    legend = machine_id_legend(machine_id, full)
    machine = machines.get(machine_id)
    if machine is not None and machine.public_ip:
        legend = f"{legend}/{machine.public_ip}"
    return legend


def format_metadata(metadata: Mapping[str, str]) -> str:
    return ",".join(f"{k}={metadata[k]}" for k in sorted(metadata))
