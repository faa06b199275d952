"""The schedule before and after an engine pass (fleetpy.engine.plan), pure like it.

``cordoned``: what cordons and drains mean to the planner (refusals, moves);
``held``: the entries of StopWhenDisconnected units kept on a gone machine;
``initial``: the entries that may stay, placed on the cluster before the pass;
``changes``: the entries to write and delete once the pass is done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from fleetpy.model.cordon import Cordon, MachineState
from fleetpy.model.types import ScheduledUnit, TargetState
from fleetpy.model.unitfile import short_hash
from fleetpy.model.xfleet import XFleet
from fleetpy.registry.base import UnitRecord
from fleetpy.schedule import Cluster, UnitSpec


def held(
    schedule: Sequence[ScheduledUnit],
    active: Mapping[str, XFleet],
    machine_ids: Set[str],
    gone: Mapping[str, float],
    wait: float,
) -> dict[tuple[str, str], float]:
    """Entries of fenced units kept on a gone machine: (machine, unit) -> seconds left.

    A unit with an entry on a live machine is not held (that copy is the one).
    """
    live = {e.name for e in schedule if e.machine_id in machine_ids}
    held: dict[tuple[str, str], float] = {}
    for entry in schedule:
        spec = active.get(entry.name)
        if (
            spec is None
            or not spec.stop_when_disconnected
            or spec.is_global
            or entry.name in live
            or entry.machine_id in machine_ids
        ):
            continue
        since = gone.get(entry.machine_id)
        if since is not None and since < wait:
            held[(entry.machine_id, entry.name)] = wait - since
    return held


def initial(
    schedule: Sequence[ScheduledUnit],
    active: Mapping[str, XFleet],
    reasons: Mapping[str, str],
    records: Mapping[str, UnitRecord],
    cluster: Cluster,
    decisions: list[str],
    held: Set[tuple[str, str]] = frozenset(),
) -> None:
    """Keep the entries that may stay (they are checked again later); drop the rest."""
    for entry in sorted(schedule, key=lambda e: (e.name, e.machine_id)):
        name, machine_id = entry.name, entry.machine_id
        if (machine_id, name) in held:
            continue
        spec = active.get(name)
        rec = records.get(name)
        if rec is None:
            why = "unit destroyed"
        elif rec.desired == TargetState.INACTIVE:
            why = "desired state inactive"
        elif spec is None:
            why = reasons.get(name, "cannot be scheduled")
        elif machine_id not in cluster.machines:
            why = "machine gone"
        elif cluster.placed(name) and not spec.is_global:
            why = f"duplicate entry (also on {min(cluster.placed(name))[:8]})"
        else:
            cluster.place(UnitSpec(name, spec), machine_id)
            continue
        decisions.append(f"unscheduled {name} from {machine_id[:8]}: {why}")


def changes(
    before: Mapping[tuple[str, str], ScheduledUnit],
    cluster: Cluster,
    records: Mapping[str, UnitRecord],
    decisions: list[str],
    held: Set[tuple[str, str]] = frozenset(),
) -> tuple[list[ScheduledUnit], list[tuple[str, str]]]:
    puts: list[ScheduledUnit] = []
    after: set[tuple[str, str]] = set(held)
    for machine_id, units in cluster.units_on.items():
        for name in units:
            rec = records[name]
            entry = ScheduledUnit(
                name=name,
                machine_id=machine_id,
                target=rec.desired,
                hash=rec.unit.hash,
                contents=rec.unit.contents,
            )
            after.add((machine_id, name))
            old = before.get((machine_id, name))
            if old == entry:
                continue
            puts.append(entry)
            if old is not None:
                what = []
                if old.target != entry.target:
                    what.append(f"target {old.target} -> {entry.target}")
                if old.hash != entry.hash or old.contents != entry.contents:
                    what.append(f"contents {short_hash(old.hash)} -> {short_hash(entry.hash)}")
                decisions.append(f"updated {name} on {machine_id[:8]}: {', '.join(what)}")
    deletes = sorted(key for key in before if key not in after)
    puts.sort(key=lambda e: (e.name, e.machine_id))
    return puts, deletes


def cordoned(
    cordons: Mapping[str, Cordon],
    active: Mapping[str, XFleet],
    schedule: Sequence[ScheduledUnit],
) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """What cordons mean to the planner: (refusals, moves).

    A cordoned or draining machine refuses every unit not on it already ("machine
    a1b2c3d4 is cordoned"), so no new unit lands there and a unit nothing else can
    take waits naming it. A draining machine also refuses the units its drain says
    to ``stop`` (and its global units with ``stop_global``): they leave it. Units it
    says to ``move`` (not global, not MachineOf followers: they follow their targets)
    are moves: placed elsewhere when some machine can take them, kept otherwise.
    """
    on: dict[str, set[str]] = {}
    for entry in schedule:
        on.setdefault(entry.machine_id, set()).add(entry.name)
    refusals: dict[tuple[str, str], str] = {}
    moves: dict[str, str] = {}
    for machine_id, cordon in sorted(cordons.items()):
        here = on.get(machine_id, set())
        stop, move = set(cordon.stop), set(cordon.move)
        draining = cordon.state == MachineState.DRAINING
        for name, spec in active.items():
            if name not in here:
                refusals[(machine_id, name)] = cordon.why()
            elif draining and (name in stop or (spec.is_global and cordon.stop_global)):
                refusals[(machine_id, name)] = f"machine {machine_id[:8]} is draining"
            elif draining and name in move and not spec.is_global and not spec.machine_of:
                moves[name] = machine_id
    return refusals, moves
