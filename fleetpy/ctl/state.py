"""What fleetctl shows about a unit, derived from a Snapshot (pure: no I/O).

- TARGET: the machine the engine scheduled the unit on (``global`` for a
  global unit, ``-`` when unscheduled).
- STATE (current): what fleet did to the unit on its scheduled machine, as
  that machine's agent reports it (list-units and status show systemd's own
  ACTIVE/SUB instead):

  - ``inactive``: not reported there (or not scheduled);
  - ``loaded``: fleet loaded it and did not start it. systemd may have
    started it on its own (a Requires= of another unit, a socket or a path
    unit): fleet leaves it be, and list-units shows it active;
  - ``launched``: fleet started it and it is up: running, activating, or
    active/exited (a oneshot with RemainAfterExit=yes);
  - ``failed``: fleet started it and systemd says failed (or the unit waits
    to be restarted after a failure, sub-state auto-restart), or systemd
    refused the start (the reason field says why);
  - ``finished``: fleet started it and it ended without failing
    (inactive/dead: a oneshot without RemainAfterExit, or a service that
    exited 0). ``fleetctl start`` of a failed or finished unit starts it again.

  A report for another version of the unit (other hash) does not count. A
  report without fleet's record (from an older fleetd) counts as launched when
  active, reloading or activating, else loaded.
- reason: why a unit waits for a machine, or the last operation of fleet's
  on the unit that failed there, with systemd's message (e.g. a stop that
  systemd refused: the unit stays launched and the agent tries again later).

A start counts (for a blocking ``fleetctl start``) only once the agent says
it settled (``fleet`` is ``launched``, no longer ``starting``): the unit
stayed up a moment, or already failed or finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fleetpy.api.snapshot import Snapshot
from fleetpy.ctl.legend import format_metadata as format_metadata  # (re-exported)
from fleetpy.ctl.legend import machine_id_legend as machine_id_legend
from fleetpy.ctl.legend import machine_legend as machine_legend
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitState
from fleetpy.registry.base import UnitRecord

ACTIVE_STATES = frozenset({"active", "reloading", "activating"})
FAILED_STATES = frozenset({"failed"})
FAILED = "failed"
FINISHED = "finished"


def is_global(contents: str) -> bool:
    """``[X-Fleet] Global=true``: scheduled on every matching machine."""
    if "Global" not in contents:
        return False
    from fleetpy.model.unitfile import parse_unit
    from fleetpy.model.xfleet import parse_xfleet

    try:
        return parse_xfleet(parse_unit("unit.service", contents))[0].is_global
    except ValueError:
        return False


def description(contents: str) -> str:
    from fleetpy.model.unitfile import InvalidUnitFile, parse_unit

    try:
        return parse_unit("unit.service", contents).last("Unit", "Description") or ""
    except InvalidUnitFile:
        return ""


def current_of(state: UnitState | None) -> TargetState:
    if state is None:
        return TargetState.INACTIVE
    if state.fleet == "loaded":
        return TargetState.LOADED
    if state.fleet in ("starting", "launched"):
        return TargetState.LAUNCHED
    if state.active_state in ACTIVE_STATES:  # an agent that does not report fleet's record
        return TargetState.LAUNCHED
    return TargetState.LOADED


def outcome(state: UnitState) -> str:
    """What became of a unit fleet launched: ``launched``, ``failed`` or ``finished``."""
    if state.active_state in FAILED_STATES or state.sub_state == "auto-restart":
        return FAILED
    if state.active_state == "inactive":
        return FINISHED
    return str(TargetState.LAUNCHED)


def shown_state(state: UnitState | None) -> str:
    """list-unit-files's STATE (see the module docstring)."""
    current = current_of(state)
    if state is None or current is not TargetState.LAUNCHED or not state.fleet:
        return str(current)
    if state.fleet == "launched" and error_parts(state.error)[0] == "start":
        return FAILED  # systemd refused the start job
    return outcome(state)


def error_parts(error: str) -> tuple[str, str]:
    """``"stop: systemd stop x: refused"`` -> ("stop", "systemd stop x: refused")."""
    op, sep, message = error.partition(": ")
    return (op, message) if sep else ("", error)


@dataclass(frozen=True, slots=True)
class UnitView:
    """One unit as fleetctl sees it."""

    name: str
    record: UnitRecord | None
    is_global: bool
    targets: tuple[str, ...]  # machines the unit is scheduled on
    state: UnitState | None  # reported on its (first) scheduled machine, same version
    current: TargetState
    reported: tuple[UnitState, ...]  # every machine's report, any version
    waiting: str | None

    @property
    def machine(self) -> str | None:
        return self.targets[0] if self.targets else None

    @property
    def failed(self) -> bool:
        """fleet started it and it failed (old agents: systemd says failed)."""
        if self.state is None:
            return False
        if not self.state.fleet:
            return self.state.active_state in FAILED_STATES
        return self.state.fleet == "launched" and outcome(self.state) == FAILED

    @property
    def settled(self) -> bool:
        """No start of fleet's still settling on the unit's machine."""
        return self.state is None or self.state.fleet != "starting"

    @property
    def shown(self) -> str:
        return shown_state(self.state)


def view(snap: Snapshot, name: str) -> UnitView:
    """One unit's view (for many units use :func:`views`: it reads the snapshot once)."""
    return views(snap, [name])[name]


def views(snap: Snapshot, names: Iterable[str]) -> dict[str, UnitView]:
    """The views of ``names``: the snapshot's schedule and states are indexed once,
    so this is linear in the snapshot, not in units x entries. In the order given."""
    order = list(dict.fromkeys(names))
    wanted = set(order)
    entries: dict[str, list[ScheduledUnit]] = {}
    for e in snap.schedule:
        if e.name in wanted:
            entries.setdefault(e.name, []).append(e)
    reports: dict[str, list[UnitState]] = {}
    for st in snap.states:
        if st.name in wanted:
            reports.setdefault(st.name, []).append(st)
    return {n: _view(snap, n, entries.get(n, []), tuple(reports.get(n, ()))) for n in order}


def _view(snap: Snapshot, name: str, entries: list[ScheduledUnit],
          reported: tuple[UnitState, ...]) -> UnitView:
    record = snap.units.get(name)
    glob = record is not None and is_global(record.unit.contents)
    targets = tuple(s.machine_id for s in entries)
    state: UnitState | None = None
    if targets and not glob:
        want_hash = record.unit.hash if record is not None else entries[0].hash
        for s in reported:
            if s.machine_id == targets[0] and (not s.hash or not want_hash or s.hash == want_hash):
                state = s
                break
    return UnitView(
        name=name,
        record=record,
        is_global=glob,
        targets=targets,
        state=state,
        current=current_of(state),
        reported=reported,
        waiting=snap.waiting.get(name),
    )


def state_message(v: UnitView, machines: Mapping[str, Machine]) -> str:
    """fleet's ``Unit hello.service launched on 4f4a4289.../172.17.8.101``."""
    msg = f"Unit {v.name} {v.current}"
    if v.current != TargetState.INACTIVE and v.machine is not None:
        msg += f" on {machine_legend(v.machine, machines, False)}"
    if v.shown == FINISHED and v.state is not None:
        msg += f" (finished: systemd says {v.state.active_state}/{v.state.sub_state})"
    return msg
