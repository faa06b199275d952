"""The agent's decisions: what to do to this machine's systemd, and why.

``plan_agent(desired, current, record, holding)`` compares this machine's
schedule with fleet's own record of what it did here (``record``: loaded or
launched by fleet, per unit, kept by the executor across fleetd restarts) and
with what systemd and /run/fleet/units show. It returns tasks in fleet's
order: every UNLOAD, every LOAD, one RELOAD (daemon-reload) if anything was
loaded or unloaded, every STOP, every START, then RECORD (the record alone
changes); by unit name within a kind. Each task carries the reason, in a
sentence, for the log, and the record to keep once it succeeded.
``fresh_loads``/``reload_avoidable`` say when that RELOAD may be left out: every
file change is a unit systemd has not loaded (see there).

Rules (fleet's meaning of "loaded": loaded, and not started by fleet):

- a unit file here that is not scheduled here (or desired inactive): UNLOAD
  (the executor stops the unit first, whoever started it, and tolerates
  systemd having forgotten it);
- scheduled but no file: LOAD; file with another hash: UNLOAD + LOAD (the
  unload stops it; it is started again if its target is launched);
- file present but systemd says ``not-found``: LOAD again (re-link) so that
  the daemon-reload lets systemd see it;
- target ``loaded``: STOP only when fleet's record says fleet launched it.
  A unit systemd started on its own (a Requires= of another unit, socket or
  path activation) is not fleet's to stop: fleet only loaded it;
- target ``launched``: START when fleet has not launched this version (hash
  and start counter) and the unit is down. Once fleet launched it, a failed
  or finished unit is left to systemd's own Restart= (no crash loop); a new
  hash, target or start counter allows a new start. A unit that is up
  without fleet's start (systemd started it, or fleetd restarted without a
  record) is recorded as launched, not started again;
- a file here without a record (a fleetd without one, e.g. after an
  upgrade) is adopted as it is: recorded loaded, or launched when its target
  is launched and it is up; nothing is stopped or started for it, so a
  restarted fleetd leaves healthy units alone;
- ``holding``: units in back-off after a failed task (the executor's clock
  decides when); they get no task until the executor lets them go, except
  the STOP of a fenced unit below;
- ``fence`` (``[X-Fleet] StopWhenDisconnected=true``, docs/reliability.md):
  once this machine's lease has not been renewed for ``STOP_AT`` of agent_ttl
  (the caller measures the time), a fenced unit that is up is STOPPED and
  recorded loaded, so that fleet starts it again; a fenced unit that is down
  is not started. Once the lease is renewed and the unit is confirmed as
  still scheduled here, the ordinary rules start it again. Units without the
  option never stop for this.

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from fleetpy.model.types import TargetState

UP_STATES = frozenset({"active", "activating", "reloading", "refreshing"})
BUSY_STATES = UP_STATES | {"deactivating"}
STOP_AT = 2 / 3  # of agent_ttl without a renewal: fenced units stop


def cut_off(since_renewal: float, ttl: float) -> bool:
    """Whether fenced units must stop: no renewal for ``STOP_AT`` of ``ttl`` or longer."""
    return since_renewal >= STOP_AT * ttl


class TaskKind(enum.StrEnum):
    UNLOAD = "unload"
    LOAD = "load"
    RELOAD = "daemon-reload"
    STOP = "stop"
    START = "start"
    RECORD = "record"


ORDER = {
    TaskKind.UNLOAD: 0,
    TaskKind.LOAD: 1,
    TaskKind.RELOAD: 2,
    TaskKind.STOP: 3,
    TaskKind.START: 4,
    TaskKind.RECORD: 5,
}


@dataclass(frozen=True, slots=True)
class DesiredUnit:
    """One entry of this machine's schedule."""

    name: str
    hash: str
    target: TargetState
    contents: str
    fenced: bool = False  # [X-Fleet] StopWhenDisconnected=true


@dataclass(frozen=True, slots=True)
class Fence:
    """StopWhenDisconnected's inputs, read by the caller from its clock and the registry.

    ``since_renewal``: seconds since the last successful renewal of this
    machine's lease began (``math.inf``: the lease is lost). ``ttl``:
    agent_ttl. ``unconfirmed``: fenced units not yet confirmed, by a read made
    after the lease was renewed, as still scheduled here.
    """

    since_renewal: float
    ttl: float
    unconfirmed: frozenset[str] = frozenset()

    @property
    def cut_off(self) -> bool:
        return cut_off(self.since_renewal, self.ttl)

    def why_down(self, name: str) -> str | None:
        """Why fenced unit ``name`` must not run now (None: it may)."""
        if self.cut_off:
            since = ("lease lost" if math.isinf(self.since_renewal)
                     else f"lease not renewed for {self.since_renewal:.1f}s")
            return (f"StopWhenDisconnected: {since} (fenced units stop at "
                    f"{STOP_AT * self.ttl:.1f}s, 2/3 of agent_ttl {self.ttl:g}s)")
        if name in self.unconfirmed:
            return ("StopWhenDisconnected: lease renewed, not yet confirmed as still "
                    "scheduled here")
        return None


@dataclass(frozen=True, slots=True)
class CurrentUnit:
    """A unit as found here: its file's hash (None: no file) and systemd's view."""

    name: str
    file_hash: str | None
    load_state: str
    active_state: str
    sub_state: str


@dataclass(frozen=True, slots=True)
class Record:
    """What fleet did to one unit here: loaded it, or launched it (that version)."""

    hash: str
    state: TargetState  # LOADED or LAUNCHED


@dataclass(frozen=True, slots=True)
class Task:
    """One step for the executor. ``unit`` is "" for RELOAD; LOAD carries contents.

    ``record``: fleet's record of the unit once the task succeeded (None:
    unchanged; an UNLOAD drops the record).
    """

    kind: TaskKind
    unit: str
    reason: str
    contents: str | None = None
    record: Record | None = None


def start_due(want: DesiredUnit | None, rec: Record | None) -> bool:
    """Whether fleet has yet to start this unit: desired launched, this version not
    launched by fleet (e.g. stopped by its fence): it starts once it is down."""
    return (want is not None and want.target == TargetState.LAUNCHED
            and rec != Record(want.hash, TargetState.LAUNCHED))


def _state(cur: CurrentUnit | None) -> str:
    if cur is None:
        return "systemd does not know it"
    return f"systemd says {cur.active_state}/{cur.sub_state}"


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:7]


def _plan_unit(
    want: DesiredUnit,
    cur: CurrentUnit | None,
    rec: Record | None,
    tasks: list[Task],
    fenced: str | None = None,
) -> None:
    name = want.name
    file_hash = cur.file_hash if cur else None
    changed = file_hash is not None and file_hash != want.hash
    loaded = Record(want.hash, TargetState.LOADED)
    launched = Record(want.hash, TargetState.LAUNCHED)
    why = ""
    if changed:
        tasks.append(
            Task(
                TaskKind.UNLOAD,
                name,
                f"unit {name} contents changed: file {_short(file_hash)}, "
                f"scheduled {_short(want.hash)}",
            )
        )
        rec = None  # the unload stops it and drops the record
        why = f"unit {name} contents changed to {_short(want.hash)}"
    elif file_hash is None:
        why = f"unit {name} scheduled here ({want.target}), not loaded"
    elif cur is not None and cur.load_state == "not-found":
        why = f"unit {name} file present but systemd says not-found"
    loaded_now = bool(why)
    if rec is not None and rec.hash != want.hash:
        rec = None  # a record of another version tells nothing about this one
    adopt = rec is None and not loaded_now  # a file here that fleet has no record of
    if loaded_now:
        tasks.append(Task(TaskKind.LOAD, name, why, want.contents, None if rec else loaded))
    # the unload of a changed unit stops it
    active = "inactive" if cur is None or changed else cur.active_state
    by_fleet = rec is not None and rec.state == TargetState.LAUNCHED
    if want.target == TargetState.LOADED:
        if by_fleet:
            reason = f"unit {name} desired loaded, launched by fleet, {_state(cur)}"
            tasks.append(Task(TaskKind.STOP, name, reason, record=loaded))
        elif adopt:
            reason = f"unit {name} loaded without fleet's record, {_state(cur)}: recorded loaded"
            tasks.append(Task(TaskKind.RECORD, name, reason, record=loaded))
        return
    if want.target != TargetState.LAUNCHED:
        return
    if fenced is not None:  # it must not run here now: stopped if up, never started
        if active in UP_STATES:
            tasks.append(Task(TaskKind.STOP, name, f"unit {name} {_state(cur)}: {fenced}",
                              record=loaded))
        return
    if by_fleet and not loaded_now:
        return  # fleet launched it: systemd's Restart= decides from here
    if active in UP_STATES:
        if not by_fleet:
            reason = f"unit {name} desired launched, already up ({_state(cur)}): recorded launched"
            tasks.append(Task(TaskKind.RECORD, name, reason, record=launched))
        return
    if active in BUSY_STATES:
        return  # deactivating: started once it is down
    state = f"loaded now ({_state(cur)})" if loaded_now else _state(cur)
    reason = f"unit {name} desired launched, {state}"
    tasks.append(Task(TaskKind.START, name, reason, record=launched))


def fresh_loads(tasks: Sequence[Task]) -> list[str]:
    """The units a pass loads, when its daemon-reload might be left out: [] when it
    loads nothing or also unloads something (systemd must forget a removed file)."""
    if any(t.kind == TaskKind.UNLOAD for t in tasks):
        return []
    return [t.unit for t in tasks if t.kind == TaskKind.LOAD]


def reload_avoidable(names: Sequence[str], before: Mapping[str, tuple[str, str]]) -> bool:
    """Whether the pass that loads ``names`` (``fresh_loads``) needs no daemon-reload.

    ``before``: name -> (load state, active state) as systemd said before the files
    were written. Yes when systemd had loaded none of them (each ``not-found`` and
    not up): systemd (252) loads a unit it has not found before from disk the next
    time it is asked for it (StartUnit, ListUnitsByNames), since its unit-path cache
    is out of date (manager_unit_cache_should_retry_load). A unit it has loaded
    keeps the contents it read until a daemon-reload, so then the reload stays. The
    executor still reloads if systemd does not find them without one.
    """
    if not names:
        return False
    for name in names:
        load_active = before.get(name)
        if load_active is None or load_active[0] != "not-found" or load_active[1] in BUSY_STATES:
            return False
    return True


def plan_agent(
    desired: Mapping[str, DesiredUnit],
    current: Mapping[str, CurrentUnit],
    record: Mapping[str, Record],
    holding: Set[str] = frozenset(),
    fence: Fence | None = None,
) -> list[Task]:
    """Tasks that bring ``current`` to ``desired``, in execution order ([] when converged).

    ``desired``: this machine's schedule by name. ``current``: units with a
    file in /run/fleet/units (or otherwise known here) with systemd's states.
    ``record``: fleet's record of what it loaded and launched here.
    ``holding``: units in back-off, given no task this time.
    ``fence``: when given, fenced units run only while it allows (None: always).
    """
    tasks: list[Task] = []
    for name in sorted(set(desired) | set(current)):
        want = desired.get(name)
        cur = current.get(name)
        fenced = fence.why_down(name) if fence is not None and want and want.fenced else None
        if name in holding:
            if fenced is not None and want is not None and cur is not None \
                    and want.target == TargetState.LAUNCHED and cur.active_state in UP_STATES:
                # a unit in back-off still stops when it must not run here
                reason = f"unit {name} {_state(cur)} (in back-off): {fenced}"
                tasks.append(Task(TaskKind.STOP, name, reason,
                                  record=Record(want.hash, TargetState.LOADED)))
            continue
        if want is None or want.target == TargetState.INACTIVE:
            if cur is not None and cur.file_hash is not None:
                why = "not scheduled here" if want is None else "desired inactive"
                tasks.append(
                    Task(TaskKind.UNLOAD, name, f"unit {name} {why}, file present, {_state(cur)}")
                )
            continue
        _plan_unit(want, cur, record.get(name), tasks, fenced)
    changed = sum(1 for t in tasks if t.kind in (TaskKind.LOAD, TaskKind.UNLOAD))
    if changed:
        tasks.append(
            Task(TaskKind.RELOAD, "", f"daemon-reload after {changed} unit file change(s)")
        )
    tasks.sort(key=lambda t: ORDER[t.kind])  # stable: by name within a kind
    return tasks
