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
  its ``stop`` requests take units off it whatever happens (``_cordoned``);
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
each placement sees the earlier ones of the same pass.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field

from fleetpy.model.cordon import Cordon, MachineState
from fleetpy.model.names import is_template
from fleetpy.model.names import parse as parse_name
from fleetpy.model.reserved import managed_problem
from fleetpy.model.types import Machine, ScheduledUnit, TargetState
from fleetpy.model.unitfile import InvalidUnitFile, short_hash
from fleetpy.model.xfleet import InvalidXFleet, XFleet, xfleet_of
from fleetpy.registry.base import UnitRecord
from fleetpy.schedule import Cluster, UnitSpec, decide, decide_global, explain, violations
from fleetpy.schedule.cycles import machine_of_cycles

SHOWN = 5
FENCE_MARGIN = 1 / 3  # of agent_ttl: how long fenced units wait after their machine went
MAX_VISITS = 3  # times one unit may be (re)considered in a pass (displacement chains)
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
        return _failed(exc)


def _failed(exc: Exception) -> str:
    """The reason a unit waits when planning it raised (a bug or unforeseen input)."""
    return f"fleet cannot plan this unit: {type(exc).__name__}: {exc}"


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


def _order(specs: Mapping[str, XFleet]) -> list[str]:
    """Names sorted, each MachineOf follower after its targets (cycles, kept out by
    ``plan_engine``, would come last, by name)."""
    followers: dict[str, list[str]] = {}
    blocking: dict[str, int] = {}
    for name, spec in specs.items():
        targets = {t for t in spec.machine_of if t in specs and t != name}
        blocking[name] = len(targets)
        for target in targets:
            followers.setdefault(target, []).append(name)
    ready = [name for name, n in blocking.items() if n == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        out.append(name)
        for follower in followers.get(name, ()):
            blocking[follower] -= 1
            if blocking[follower] == 0:
                heapq.heappush(ready, follower)
    if len(out) < len(specs):
        done = set(out)
        out.extend(sorted(n for n in specs if n not in done))
    return out


class _Pass:
    """One planning pass: the cluster as it evolves, and what was decided."""

    def __init__(
        self, cluster: Cluster, specs: Mapping[str, XFleet], order: list[str],
        moves: Mapping[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.moves = moves or {}  # unit -> the draining machine it should leave
        self.specs = specs
        self.rank = {name: i for i, name in enumerate(order)}
        self.followers: dict[str, list[str]] = {}
        for name, spec in specs.items():
            for target in spec.machine_of:
                self.followers.setdefault(target, []).append(name)
        self.queue = [(i, name) for i, name in enumerate(order)]
        self.queued = set(order)
        self.visits: dict[str, int] = {}
        self.reasons: dict[str, str] = {}
        self.partial: set[str] = set()  # global units placed, with machines refusing them
        self.decisions: list[str] = []

    def run(self) -> None:
        while self.queue:
            _, name = heapq.heappop(self.queue)
            self.queued.discard(name)
            self.visits[name] = self.visits.get(name, 0) + 1
            spec = UnitSpec(name, self.specs[name])
            try:
                if spec.xfleet.is_global:
                    self._global(spec)
                else:
                    self._single(spec)
            except Exception as exc:  # this unit waits; the pass goes on for the others
                self.reasons[name] = _failed(exc)

    def _requeue(self, name: str) -> None:
        """Consider ``name`` again (it lost its place) unless seen too often."""
        if name not in self.queued and self.visits.get(name, 0) < MAX_VISITS:
            heapq.heappush(self.queue, (self.rank[name], name))
            self.queued.add(name)

    def _unschedule(self, name: str, machine_id: str, why: str) -> None:
        self.cluster.remove(name, machine_id)
        self.decisions.append(f"unscheduled {name} from {machine_id[:8]}: {why}")
        for follower in self.followers.get(name, ()):
            if follower in self.rank:
                self._requeue(follower)

    def _single(self, spec: UnitSpec) -> None:
        name = spec.name
        for machine_id in sorted(self.cluster.placed(name)):
            bad = violations(self.cluster, spec, machine_id)
            if not bad:
                if self.moves.get(name) != machine_id:
                    self.reasons.pop(name, None)
                    self.partial.discard(name)
                    return
                if not self._drain_move(spec, machine_id):
                    return
                break
            self._unschedule(name, machine_id, "; ".join(bad))
        decision = decide(self.cluster, spec)
        if decision.machine_id is None:
            self.reasons[name] = "; ".join(decision.reasons)
            return
        for displaced in decision.displace:
            self._unschedule(displaced, decision.machine_id, f"replaced by {name}")
            self._requeue(displaced)
        self.cluster.place(spec, decision.machine_id)
        self.reasons.pop(name, None)
        self.decisions.append(f"scheduled {name} on {decision.machine_id[:8]} ({decision.basis})")

    def _drain_move(self, spec: UnitSpec, machine_id: str) -> bool:
        """Take ``spec`` off a draining machine if another one can take it (True: it is
        off, and that machine refuses it for the rest of the pass); else it stays and
        the reason it cannot move is written (as for a partly placed global unit)."""
        name = spec.name
        refusing = self.cluster.refused.setdefault(name, {})
        refusing[machine_id] = f"machine {machine_id[:8]} is draining"
        self.cluster.remove(name, machine_id)
        decision = decide(self.cluster, spec)
        if decision.machine_id is None:
            del refusing[machine_id]
            if not refusing:
                del self.cluster.refused[name]
            self.cluster.place(spec, machine_id)
            self.reasons[name] = (f"cannot leave draining machine {machine_id[:8]}: "
                                  + "; ".join(decision.reasons))
            self.partial.add(name)
            return False
        self.partial.discard(name)
        self.decisions.append(f"unscheduled {name} from {machine_id[:8]}: machine is draining")
        for follower in self.followers.get(name, ()):
            if follower in self.rank:
                self._requeue(follower)
        return True

    def _global(self, spec: UnitSpec) -> None:
        name = spec.name
        for machine_id in sorted(self.cluster.placed(name)):
            bad = violations(self.cluster, spec, machine_id)
            if bad:
                self._unschedule(name, machine_id, "; ".join(bad))
        have = self.cluster.placed(name)
        new = [mid for mid in decide_global(self.cluster, spec) if mid not in have]
        for machine_id in new:
            self.cluster.place(spec, machine_id)
        if new:
            shown = ", ".join(mid[:8] for mid in new[:SHOWN])
            more = f", ... {len(new) - SHOWN} more" if len(new) > SHOWN else ""
            where = f"{len(new)} machines" if len(new) > 1 else "1 machine"
            self.decisions.append(f"scheduled {name} on {where} (global): {shown}{more}")
        if not self.cluster.placed(name):
            self.reasons[name] = "; ".join(explain(self.cluster, spec))
            return
        eligible = self.cluster.eligible(spec.xfleet)
        refusing = self.cluster.refused.get(name, {})
        skipped = [
            why for mid, why in sorted(refusing.items()) if eligible is None or mid in eligible
        ]
        if skipped:  # placed elsewhere; the machines it skips say why
            self.reasons[name] = "; ".join(skipped)
            self.partial.add(name)
        else:
            self.reasons.pop(name, None)
            self.partial.discard(name)


def _held(
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
        if (spec is None or not spec.stop_when_disconnected or spec.is_global
                or entry.name in live or entry.machine_id in machine_ids):
            continue
        since = gone.get(entry.machine_id)
        if since is not None and since < wait:
            held[(entry.machine_id, entry.name)] = wait - since
    return held


def _initial(
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


def _changes(
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


def _cordoned(
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
    ``cordons``: machine id -> its cordon (fleetpy.model.cordon): see ``_cordoned``.
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
    refusals, moves = _cordoned(
        {mid: c for mid, c in (cordons or {}).items() if mid in live}, active, schedule)
    refusals.update(refused or {})  # a machine's own refusal says more than its cordon
    by_unit: dict[str, dict[str, str]] = {}
    for (machine_id, name), why in refusals.items():
        if name in records:
            by_unit.setdefault(name, {})[machine_id] = why
    cluster = Cluster(machines, refused=by_unit)
    held = _held(schedule, active, cluster.machines.keys(), gone or {}, fence_wait)
    for machine_id, name in sorted(held):
        active.pop(name, None)
        reasons[name] = (f"StopWhenDisconnected: its machine {machine_id[:8]} left; placed "
                         f"elsewhere {fence_wait:.1f}s after that, once its copy there stopped")
    decisions: list[str] = []
    _initial(schedule, active, reasons, records, cluster, decisions, held.keys())
    planner = _Pass(cluster, active, _order(active), moves)
    planner.run()
    decisions.extend(planner.decisions)
    reasons.update(planner.reasons)

    before = {(e.machine_id, e.name): e for e in schedule}
    puts, deletes = _changes(before, cluster, records, decisions, held.keys())
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
    fenced = {name for name, spec in spec_of.items()
              if isinstance(spec, XFleet) and spec.stop_when_disconnected and not spec.is_global}
    absent = sorted({machine_id for machine_id, name in deletes
                     if machine_id not in cluster.machines and name in fenced})
    return EnginePlan(puts=puts, deletes=deletes, waiting=out, decisions=decisions, specs=parsed,
                      recheck_in=min(held.values(), default=None), absent=absent)
