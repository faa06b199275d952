"""Where fleetctl ssh/status/journal go: machines by ID prefix, units by name (pure).

Messages are fleet's where fleet had one ("Unit x does not exist.",
"could not find matching unit or machine"), plainer where fleet was vague.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetpy.api.snapshot import Snapshot
from fleetpy.ctl.files import BadInput
from fleetpy.ctl.state import machine_legend, view
from fleetpy.model.types import Machine, TargetState


def _legends(machines: Sequence[Machine], snap: Snapshot) -> str:
    return ", ".join(machine_legend(m.id, snap.machines, False) for m in machines)


def with_id_prefix(arg: str, machines: Iterable[Machine]) -> list[Machine]:
    """The machines whose ID starts with ``arg`` (also as list-machines shows it:
    "605c0ca8..."), by ID."""
    prefix = arg.removesuffix("...")
    if not prefix:
        return []
    return sorted((m for m in machines if m.id.startswith(prefix)), key=lambda m: m.id)


def machines_by_prefix(prefix: str, snap: Snapshot) -> list[Machine]:
    return with_id_prefix(prefix, snap.machines.values())


def _one_machine(prefix: str, snap: Snapshot) -> Machine:
    found = machines_by_prefix(prefix, snap)
    if not found:
        raise BadInput(f"Unable to proceed: no machine matches {prefix!r}", plain=True)
    if len(found) > 1:
        raise BadInput(f"Unable to proceed: {len(found)} machines match {prefix!r}: "
                       f"{_legends(found, snap)}; give more of the ID", plain=True)
    return found[0]


def _unit_machine(name: str, snap: Snapshot) -> Machine:
    v = view(snap, name)
    if v.record is None:
        raise BadInput(f"Unit {name} does not exist.", plain=True)
    if v.is_global:
        raise BadInput(f"Unable to proceed: {name} is a global unit: name one of its "
                       "machines instead (fleetctl list-units shows them)", plain=True)
    if v.machine is None:
        raise BadInput(f"Unable to proceed: unit {name} is not scheduled on any machine",
                       plain=True)
    machine = snap.machines.get(v.machine)
    if machine is None:
        raise BadInput(f"Unable to proceed: unit {name} is scheduled on machine "
                       f"{v.machine[:8]}..., which is not in the cluster now", plain=True)
    return machine


def ssh_target(arg: str, unit: str | None, snap: Snapshot, *, machine_only: bool = False,
               unit_only: bool = False) -> Machine:
    """The machine ``fleetctl ssh ARG`` logs into.

    ``unit`` is ARG as a unit name (None when ARG cannot name a unit).
    Without ``machine_only``/``unit_only``, ARG may be either; both matching
    is ambiguous, as in fleet.
    """
    if machine_only:
        return _one_machine(arg, snap)
    if unit_only:
        if unit is None:
            raise BadInput(f"Unit {arg} does not exist.", plain=True)
        return _unit_machine(unit, snap)
    machines = machines_by_prefix(arg, snap)
    is_unit = unit is not None and unit in snap.units
    if machines and is_unit:
        raise BadInput(f"Unable to proceed: ambiguous argument, both machine and unit found "
                       f"for `{arg}`.\nPlease use flag `--machine` or `--unit` to refine the "
                       "search", plain=True)
    if is_unit:
        assert unit is not None
        return _unit_machine(unit, snap)
    if machines:
        return _one_machine(arg, snap)
    raise BadInput("Unable to proceed: could not find matching unit or machine", plain=True)


def unit_machines(name: str, snap: Snapshot, verb: str) -> list[Machine]:
    """The machines to run ``verb`` (status/journal) of unit ``name`` on.

    A global unit: every live machine it is scheduled on. Raises BadInput
    with fleet's message when the unit does not exist or is not loaded.
    """
    v = view(snap, name)
    if v.record is None:
        raise BadInput(f"Unit {name} does not exist.", plain=True)
    if v.waiting and not v.targets:  # no machine can take it: say why (fleet said nothing)
        raise BadInput(f"Unit {name} is waiting to be scheduled: {v.waiting}", plain=True)
    not_there = ("does not appear to be loaded." if verb == "status"
                 else "does not appear to be running.")
    if v.is_global:
        found = [snap.machines[m] for m in v.targets if m in snap.machines]
        if not found:
            raise BadInput(f"Unit {name} {not_there} (global: no machine runs it)", plain=True)
        return sorted(found, key=lambda m: m.id)
    if v.current is TargetState.INACTIVE or v.machine is None:
        raise BadInput(f"Unit {name} {not_there}", plain=True)
    machine = snap.machines.get(v.machine)
    if machine is None:
        raise BadInput(f"Unit {name} is on machine {v.machine[:8]}..., which is not in the "
                       "cluster now", plain=True)
    return [machine]
