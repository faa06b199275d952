"""The agent's decisions: what to do to this machine's systemd, and why.

``plan_agent(desired, current, attempted)`` compares this machine's schedule
with what systemd and /run/fleet/units show and returns tasks in fleet's
order: every UNLOAD, every LOAD, one RELOAD (daemon-reload) if anything was
loaded or unloaded, every STOP, every START; by unit name within a kind.
Each task carries the reason, in a sentence, for the log.

Rules:

- a unit file here that is not scheduled here: UNLOAD (the executor stops
  the unit first and tolerates systemd having forgotten it);
- scheduled but no file: LOAD; file with another hash: UNLOAD + LOAD (the
  unload stops it; it is started again if its target is launched);
- file present but systemd says ``not-found``: LOAD again (re-link) so that
  the daemon-reload lets systemd see it;
- target ``loaded`` and the unit is up (active/activating/reloading): STOP;
- target ``launched`` and the unit is down (inactive/failed/other): START,
  except when (hash, target) equals ``attempted[name]``, the last start the
  executor made: systemd's own Restart= then decides, fleetd does not
  crash-loop a failing unit; a changed hash or target allows a new start;
- a unit that is up, or busy deactivating, is never started, restarted or
  reloaded while its contents are unchanged, so a restarted fleetd leaves
  healthy units alone.

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from fleetpy.model.types import TargetState

UP_STATES = frozenset({"active", "activating", "reloading", "refreshing"})
BUSY_STATES = UP_STATES | {"deactivating"}


class TaskKind(enum.StrEnum):
    UNLOAD = "unload"
    LOAD = "load"
    RELOAD = "daemon-reload"
    STOP = "stop"
    START = "start"


ORDER = {
    TaskKind.UNLOAD: 0,
    TaskKind.LOAD: 1,
    TaskKind.RELOAD: 2,
    TaskKind.STOP: 3,
    TaskKind.START: 4,
}


@dataclass(frozen=True, slots=True)
class DesiredUnit:
    """One entry of this machine's schedule."""

    name: str
    hash: str
    target: TargetState
    contents: str


@dataclass(frozen=True, slots=True)
class CurrentUnit:
    """A unit as found here: its file's hash (None: no file) and systemd's view."""

    name: str
    file_hash: str | None
    load_state: str
    active_state: str
    sub_state: str


@dataclass(frozen=True, slots=True)
class Task:
    """One step for the executor. ``unit`` is "" for RELOAD; LOAD carries contents."""

    kind: TaskKind
    unit: str
    reason: str
    contents: str | None = None


def _state(cur: CurrentUnit | None) -> str:
    if cur is None:
        return "systemd does not know it"
    return f"systemd says {cur.active_state}/{cur.sub_state}"


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:7]


def _plan_unit(
    want: DesiredUnit,
    cur: CurrentUnit | None,
    attempted: tuple[str, TargetState] | None,
    tasks: list[Task],
) -> None:
    name = want.name
    file_hash = cur.file_hash if cur else None
    changed = file_hash is not None and file_hash != want.hash
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
        why = f"unit {name} contents changed to {_short(want.hash)}"
    elif file_hash is None:
        why = f"unit {name} scheduled here ({want.target}), not loaded"
    elif cur is not None and cur.load_state == "not-found":
        why = f"unit {name} file present but systemd says not-found"
    loaded_now = bool(why)
    if loaded_now:
        tasks.append(Task(TaskKind.LOAD, name, why, want.contents))
    # the unload of a changed unit stops it
    active = "inactive" if cur is None or changed else cur.active_state
    if want.target == TargetState.LOADED:
        if active in UP_STATES:
            tasks.append(Task(TaskKind.STOP, name, f"unit {name} desired loaded, {_state(cur)}"))
        return
    if want.target != TargetState.LAUNCHED or active in BUSY_STATES:
        return
    if loaded_now:
        tasks.append(
            Task(TaskKind.START, name, f"unit {name} desired launched, loaded now ({_state(cur)})")
        )
    elif attempted != (want.hash, want.target):
        tasks.append(Task(TaskKind.START, name, f"unit {name} desired launched, {_state(cur)}"))


def plan_agent(
    desired: Mapping[str, DesiredUnit],
    current: Mapping[str, CurrentUnit],
    attempted: Mapping[str, tuple[str, TargetState]],
) -> list[Task]:
    """Tasks that bring ``current`` to ``desired``, in execution order ([] when converged).

    ``desired``: this machine's schedule by name. ``current``: units with a
    file in /run/fleet/units (or otherwise known here) with systemd's states.
    ``attempted``: name -> (hash, target) of the last START the executor made.
    """
    tasks: list[Task] = []
    for name in sorted(set(desired) | set(current)):
        want = desired.get(name)
        cur = current.get(name)
        if want is None or want.target == TargetState.INACTIVE:
            if cur is not None and cur.file_hash is not None:
                why = "not scheduled here" if want is None else "desired inactive"
                tasks.append(
                    Task(TaskKind.UNLOAD, name, f"unit {name} {why}, file present, {_state(cur)}")
                )
            continue
        _plan_unit(want, cur, attempted.get(name), tasks)
    changed = sum(1 for t in tasks if t.kind in (TaskKind.LOAD, TaskKind.UNLOAD))
    if changed:
        tasks.append(
            Task(TaskKind.RELOAD, "", f"daemon-reload after {changed} unit file change(s)")
        )
    tasks.sort(key=lambda t: ORDER[t.kind])  # stable: by name within a kind
    return tasks
