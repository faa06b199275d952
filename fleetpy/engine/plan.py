"""The engine's decisions: from units, machines and the schedule to schedule changes.

``plan_engine(units, machines, schedule)`` is pure (no I/O, no clock, no
logging). It returns the entries to write and delete, the reasons units wait,
and one sentence per decision, for the log:

- a unit destroyed, desired inactive, or whose [X-Fleet] became invalid
  leaves the schedule;
- an entry on a machine that is gone is removed and the unit placed again in
  the same pass; MachineOf followers follow their leader;
- an entry whose machine no longer satisfies its constraints (MachineID,
  MachineOf, MachineMetadata, Conflicts, replaced) moves; otherwise a placed
  unit never moves: a changed hash or target updates the entry in place;
- an unplaced unit desired loaded or launched is placed by the scheduler, or
  waits with the scheduler's reason; units on a MachineOf cycle wait (and
  leave the schedule) with a reason naming the cycle; a unit placed on a machine hosting a
  unit it Replaces displaces that unit, which is placed again;
- a Global unit gets one entry per matching machine, machines joining later
  included;
- a cordoned or draining machine (``cordons``) gets no new unit; a drain's
  ``move`` requests move units off it where another machine can take them,
  its ``stop`` requests take units off it whatever happens (``entries.cordoned``);
- a machine that refuses a unit (``refused``: it has a unit of that name
  outside fleet) never gets it: an entry there moves, a global unit skips
  that machine (its reason says which machines it skips and why), a unit
  every candidate refuses waits with their reasons;
- a unit with ``StopWhenDisconnected=true`` whose machine is gone keeps its
  entry there, and waits, until ``fence_wait`` seconds after the engine saw
  the machine go (``gone``: the caller's clock): its agent stops it before
  that (docs/reliability.md), so the two copies never overlap. The plan
  names such machines (``absent``): its write must find them still gone.

Units are processed by name, a MachineOf follower after its targets, and
each placement sees the earlier ones of the same pass. The stages:
fleetpy.engine.entries (cordons, held entries, the entries kept before the
pass, the changes after it) and fleetpy.engine.placement (the pass itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fleetpy.engine import entries
from fleetpy.engine.placement import Pass, failed, order
from fleetpy.model.cordon import Cordon
from fleetpy.model.names import is_template
from fleetpy.model.names import parse as parse_name
from fleetpy.model.reserved import managed_problem
from fleetpy.model.types import Machine, ScheduledUnit, TargetState
from fleetpy.model.unitfile import InvalidUnitFile
from fleetpy.model.xfleet import InvalidXFleet, XFleet, xfleet_of
from fleetpy.registry.base import UnitRecord
from fleetpy.schedule import Cluster
from fleetpy.schedule.cycles import machine_of_cycles

FENCE_MARGIN = 1 / 3  # of agent_ttl: how long fenced units wait after their machine went
Spec = XFleet | str  # parsed requirements, or why they cannot be parsed
SpecCache = Mapping[str, tuple[str, Spec]]  # name -> (unit hash, spec)


@dataclass(frozen=True, slots=True)
class EnginePlan:
    """Schedule changes: ``waiting`` maps every waiting unit to its reason, None clears one."""

    puts: list[ScheduledUnit] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)
    waiting: dict[str, str | None] = field(default_factory=dict)
    decisions: list[str] = field(default_factory=list)
    specs: dict[str, tuple[str, Spec]] = field(default_factory=dict)
    recheck_in: float | None = None  # seconds until a fenced unit may be placed elsewhere
    absent: list[str] = field(default_factory=list)  # gone machines this plan moves fenced
    # units off: the write must find them still gone (a machine back keeps its units)


def parse_spec(name: str, contents: str) -> Spec:
    """A unit's [X-Fleet] requirements, or the reason they are unusable."""
    try:
        return xfleet_of(name, contents)
    except (InvalidXFleet, InvalidUnitFile) as exc:
        return str(exc)
    except Exception as exc:  # one unit's contents must never end a pass
        return failed(exc)


def _template_reason(name: str) -> str | None:
    """Why a template cannot be scheduled (names were validated at submit time)."""
    if not is_template(name):  # the first "@" decides, as in systemd: a@b@.service is an
        return None  # instance of a@.service whose instance is "b@"
    parsed = parse_name(name)
    return f"{name} is a template: start an instance such as {parsed.prefix}@1.{parsed.suffix}"


def _managed_reason(name: str) -> str | None:
    """Why fleet must not run this unit anywhere (submit refuses it; it can still get
    into etcd another way, e.g. etcdctl): fleetpy.model.reserved's rule."""
    problem = managed_problem(name)
    return None if problem is None else f"fleet does not manage {name}: {problem}"


def plan_engine(
    units: Sequence[UnitRecord],
    machines: Sequence[Machine],
    schedule: Sequence[ScheduledUnit],
    waiting: Mapping[str, str] | None = None,
    specs: SpecCache | None = None,
    unreadable: frozenset[str] = frozenset(),
    refused: Mapping[tuple[str, str], str] | None = None,
    gone: Mapping[str, float] | None = None,
    fence_wait: float = 0.0,
    cordons: Mapping[str, Cordon] | None = None,
) -> EnginePlan:
    """Plan one engine pass.

    ``waiting``: the reasons currently written (so that cleared ones get None
    and unchanged ones are not announced again). ``specs``: parsed [X-Fleet]
    from an earlier pass (``EnginePlan.specs``), reused while the hash matches.
    ``unreadable``: units whose record does not decode: their schedule entries
    are left as they are (unreadable is not destroyed).
    ``refused``: (machine id, unit) -> why that machine will not load the unit.
    ``gone``: machine id -> seconds since the engine saw that machine go (or
    since the engine's view began, for one it never saw); a machine left out
    is long gone. ``fence_wait``: how long after that a unit with
    StopWhenDisconnected=true keeps its entry there before it is placed elsewhere.
    ``cordons``: machine id -> its cordon (fleetpy.model.cordon): see ``entries.cordoned``.
    """
    previous = waiting or {}
    records = {r.unit.name: r for r in units if r.unit.name not in unreadable}
    schedule = [e for e in schedule if e.name not in unreadable]
    parsed: dict[str, tuple[str, Spec]] = {}
    for name, rec in records.items():
        cached = specs.get(name) if specs else None
        if cached is not None and cached[0] == rec.unit.hash:
            parsed[name] = cached
        else:
            parsed[name] = (rec.unit.hash, parse_spec(name, rec.unit.contents))
    spec_of = {name: spec for name, (_, spec) in parsed.items()}
    cycles = machine_of_cycles(
        {
            name: spec
            for name, spec in spec_of.items()
            if isinstance(spec, XFleet) and _template_reason(name) is None
        }
    )

    reasons: dict[str, str] = {}
    active: dict[str, XFleet] = {}
    for name, rec in records.items():
        if rec.desired == TargetState.INACTIVE:
            continue
        spec = spec_of[name]
        why = _template_reason(name) or _managed_reason(name) or cycles.get(name)
        if why is None and isinstance(spec, XFleet):
            active[name] = spec
        else:
            reasons[name] = why or str(spec)

    live = {m.id for m in machines}
    refusals, moves = entries.cordoned(
        {mid: c for mid, c in (cordons or {}).items() if mid in live}, active, schedule
    )
    refusals.update(refused or {})  # a machine's own refusal says more than its cordon
    by_unit: dict[str, dict[str, str]] = {}
    for (machine_id, name), why in refusals.items():
        if name in records:
            by_unit.setdefault(name, {})[machine_id] = why
    cluster = Cluster(machines, refused=by_unit)
    held = entries.held(schedule, active, cluster.machines.keys(), gone or {}, fence_wait)
    for machine_id, name in sorted(held):
        active.pop(name, None)
        reasons[name] = (
            f"StopWhenDisconnected: its machine {machine_id[:8]} left; placed "
            f"elsewhere {fence_wait:.1f}s after that, once its copy there stopped"
        )
    decisions: list[str] = []
    entries.initial(schedule, active, reasons, records, cluster, decisions, held.keys())
    planner = Pass(cluster, active, order(active), moves)
    planner.run()
    decisions.extend(planner.decisions)
    reasons.update(planner.reasons)

    before = {(e.machine_id, e.name): e for e in schedule}
    puts, deletes = entries.changes(before, cluster, records, decisions, held.keys())
    out: dict[str, str | None] = {}
    for name in sorted(reasons):
        if cluster.placed(name) and name not in planner.partial:
            continue
        out[name] = reasons[name]
        if previous.get(name) != reasons[name]:
            decisions.append(f"{name} waits: {reasons[name]}")
    for name in sorted(previous):
        if name not in out:
            out[name] = None
    fenced = {
        name
        for name, spec in spec_of.items()
        if isinstance(spec, XFleet) and spec.stop_when_disconnected and not spec.is_global
    }
    absent = sorted(
        {
            machine_id
            for machine_id, name in deletes
            if machine_id not in cluster.machines and name in fenced
        }
    )
    return EnginePlan(
        puts=puts,
        deletes=deletes,
        waiting=out,
        decisions=decisions,
        specs=parsed,
        recheck_in=min(held.values(), default=None),
        absent=absent,
    )
