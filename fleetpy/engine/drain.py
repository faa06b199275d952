"""The drain's decisions: which units leave a draining machine next (pure).

``plan_drain`` takes the schedule, the reported states, the engine's waiting
reasons and the machine's cordon, and says what to ask the engine next
(fleetpy.engine.plan honours a cordon's ``move``/``stop`` requests; the engine
stays the only writer of schedule/). No I/O, no clock, no logging.

- The units on the machine form groups: a MachineOf follower with the unit it
  follows (they move together). A group with a unit pinned by MachineID
  cannot move: it is reported. Global units stay (unless ``stop_global``:
  then they leave once nothing else is moving).
- A group is asked to move (put in ``move``) at most ``max_parallel`` at a
  time; it counts as moved once none of it is on the machine and each unit
  runs on its new machine (active, or loaded for a unit desired loaded).
- A group still on the machine that the engine cannot place elsewhere (its
  reason starts "cannot leave draining machine") is stuck: reported with that
  reason, and it does not hold a slot.
- ``deadline_passed``: whatever is left is asked to stop (taken off the
  machine whatever happens; it waits, naming the drain).

The engine (fleetpy.engine.drainer) carries each drain on at the record's own
pace (``Cordon.max_parallel``; ``deadline_passed`` compares ``Cordon.deadline``
with the ``now`` it is given), and the only reported states it reads are
``states_needed``: those of the units it asked to move, where they are now,
and of those it asked to stop, on the machine. ``decisions`` says, one line
each, what a step asked that the record did not ask before.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from fleetpy.engine.plan import parse_spec
from fleetpy.model.cordon import Cordon, MachineState
from fleetpy.model.types import ScheduledUnit, TargetState, UnitState
from fleetpy.model.xfleet import XFleet

CANNOT_LEAVE = "cannot leave draining machine"


@dataclass(frozen=True, slots=True)
class DrainStep:
    """What to write (``cordon``) and what to tell the user."""

    cordon: Cordon
    moved: tuple[str, ...] = ()  # units asked to move that now run elsewhere
    moving: tuple[str, ...] = ()  # asked to move, not yet running elsewhere
    queued: tuple[str, ...] = ()  # movable, not asked yet
    stuck: dict[str, str] = field(default_factory=dict)  # unit -> why it cannot leave
    pinned: dict[str, str] = field(default_factory=dict)  # unit -> why it cannot move
    stopping: tuple[str, ...] = ()  # asked to stop, still on the machine
    staying: tuple[str, ...] = ()  # global units that stay
    finished: bool = False  # nothing more can happen without a deadline or a change

    @property
    def left(self) -> tuple[str, ...]:
        """Units on the machine that the drain still has to take away."""
        return tuple(sorted({*self.moving, *self.queued, *self.stuck, *self.pinned,
                             *self.stopping} - set(self.moved)))


def _groups(names: Sequence[str], specs: Mapping[str, XFleet]) -> list[tuple[str, ...]]:
    """MachineOf-connected groups of the units on the machine, sorted."""
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for name in names:
        for target in specs[name].machine_of:
            if target in parent:
                parent[root(name)] = root(target)
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(root(name), []).append(name)
    return sorted(tuple(sorted(g)) for g in out.values())


@functools.lru_cache(maxsize=4096)
def _spec(name: str, contents: str) -> XFleet:
    """The unit's [X-Fleet] (an empty one when it does not parse); memoized: a drain
    in progress asks for the same few units' every step."""
    spec = parse_spec(name, contents)
    return spec if isinstance(spec, XFleet) else XFleet()


def _running(entry: ScheduledUnit, state: UnitState | None) -> bool:
    if state is None or state.hash != entry.hash:
        return False
    if entry.target == TargetState.LAUNCHED:
        return state.active_state == "active"
    return state.load_state == "loaded"


def plan_drain(
    cordon: Cordon,
    schedule: Sequence[ScheduledUnit],
    states: Sequence[UnitState],
    waiting: Mapping[str, str],
    max_parallel: int = 1,
    deadline_passed: bool = False,
) -> DrainStep:
    """The next step of draining ``cordon.machine_id`` (see the module doc)."""
    machine = cordon.machine_id
    here = {e.name: e for e in schedule if e.machine_id == machine}
    elsewhere = {e.name: e for e in schedule if e.machine_id != machine}
    state_of = {(s.machine_id, s.name): s for s in states}
    specs: dict[str, XFleet] = {}
    for name, entry in here.items():
        specs[name] = _spec(name, entry.contents)
    staying = tuple(sorted(n for n in here if specs[n].is_global))
    movable = [n for n in sorted(here) if not specs[n].is_global]
    asked = set(cordon.move)

    def arrived(name: str) -> bool:
        entry = elsewhere.get(name)
        return entry is not None and _running(entry, state_of.get((entry.machine_id, name)))

    moved = tuple(sorted(n for n in asked if n not in here and arrived(n)))
    moving = {n for n in asked if n not in here and not arrived(n) and n in elsewhere}
    pinned: dict[str, str] = {}
    stuck: dict[str, str] = {}
    queued: list[tuple[str, ...]] = []
    busy = 0
    for group in _groups(movable, specs):
        pins = [n for n in group if specs[n].machine_id is not None]
        if pins:
            why = f"pinned by MachineID={specs[pins[0]].machine_id}"
            pinned.update({n: why if n in pins else f"follows {pins[0]} (MachineOf)"
                           for n in group})
            continue
        reasons = [waiting[n] for n in group if waiting.get(n, "").startswith(CANNOT_LEAVE)]
        if any(n in asked for n in group):
            if reasons:
                stuck.update(dict.fromkeys(group, reasons[0]))
            else:
                moving.update(group)
                busy += 1
        else:
            queued.append(group)
    # groups that left the machine but are not running yet hold their slot (counted
    # by the units that lead them: those without MachineOf)
    for name in moving - set(here):
        busy += not _spec(name, elsewhere[name].contents).machine_of
    slots = max(0, max_parallel - busy)
    ask = [n for g in queued[:slots] for n in g]
    moving.update(ask)
    still_queued = tuple(n for g in queued[slots:] for n in g)
    # a unit asked to stop is stopping while scheduled here or reported running here
    alive = {s.name for s in states if s.machine_id == machine
             and s.active_state in ("active", "activating", "deactivating", "reloading")}
    stop: set[str] = {n for n in cordon.stop if n in here or n in alive}
    quiet = not moving and not still_queued
    stop_global = cordon.stop_global and quiet
    if deadline_passed:
        stop |= set(movable)
        stop -= {n for n in stop if n not in here and n not in alive}
        stop_global = cordon.stop_global
    if stop_global:
        stop |= set(staying)
    stopping = tuple(sorted(stop))
    new = replace(
        cordon, state=MachineState.DRAINING,
        move=tuple(sorted(asked | set(ask))), stop=tuple(sorted(set(cordon.stop) | stop)),
    )
    shown_staying = () if cordon.stop_global else staying
    # after the deadline, units that left but do not run yet are not waited for
    finished = (not (set(here) - set(shown_staying)) and not stopping
                and (not moving or deadline_passed)) or (
        not deadline_passed and quiet and not stopping
        and set(here) - set(shown_staying) <= set(stuck) | set(pinned))
    return DrainStep(
        cordon=new, moved=moved,
        moving=tuple(sorted(n for n in moving if n not in stop)),
        queued=still_queued,
        stuck={n: r for n, r in stuck.items() if n not in stop},
        pinned={n: r for n, r in pinned.items() if n not in stop},
        stopping=stopping, staying=shown_staying, finished=finished,
    )


def deadline_passed(cordon: Cordon, now: float) -> bool:
    """Whether the drain's deadline (Unix time) is reached at ``now``."""
    return cordon.deadline is not None and now >= cordon.deadline


def states_needed(cordon: Cordon, schedule: Iterable[ScheduledUnit]) -> list[tuple[str, str]]:
    """(machine id, unit) of every reported state ``plan_drain`` looks at: the units
    asked to move, where they are scheduled now (off the machine), and the units asked
    to stop, on the machine. The states of the units still on the machine, or of any
    other unit, do not change its answer."""
    machine, asked = cordon.machine_id, set(cordon.move)
    keys = {(e.machine_id, e.name) for e in schedule
            if e.name in asked and e.machine_id != machine}
    keys.update((machine, name) for name in cordon.stop)
    return sorted(keys)


def decisions(before: Cordon, step: DrainStep, passed: bool) -> list[str]:
    """What ``step`` asks that ``before`` did not (one line per decision, for the log)."""
    machine = f"drain of machine {before.machine_id[:8]}"
    lines = []
    moves = sorted(set(step.cordon.move) - set(before.move))
    if moves:
        lines.append(f"{machine}: moving {', '.join(moves)} (at most {before.max_parallel} "
                     "MachineOf group(s) at a time, each running elsewhere before the next)")
    stops = sorted(set(step.cordon.stop) - set(before.stop))
    if stops:
        why = "deadline passed" if passed else "every other unit has left (stop_global)"
        lines.append(f"{machine}: {why}: stopping {', '.join(stops)}")
    return lines


def reports(step: DrainStep) -> list[str]:
    """What a drain cannot do and why, one line per unit (said once by the engine)."""
    return [f"{name} cannot move: {why}"
            for name, why in sorted({**step.pinned, **step.stuck}.items())]
