"""Blocking until units report a state: watch-driven, with a visible wait on a TTY.

fleetctl polls nothing: it follows snapshots from ``client.watch_units`` (a
registry watch, or the API's WatchUnitStates stream) and stops when every unit
reached its goal, failed, or the time ran out. ``--block-attempts=N`` keeps
fleet's meaning of N attempts 0.5 s apart, so it waits at most N x 0.5 s
(0 = no limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sys
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from fleetpy.api.snapshot import Snapshot
from fleetpy.ctl.client import FleetClient
from fleetpy.ctl.common import echo
from fleetpy.ctl.state import UnitView, error_parts, machine_legend, state_message, views
from fleetpy.model.types import TargetState

ATTEMPT_INTERVAL = 0.5
SLOW_NOTE_AFTER = 10.0
NOTES_SHOWN = 10  # units named in that note; the rest are counted
FRAMES = "|/-\\"


class Goal(enum.StrEnum):
    INACTIVE = "inactive"
    LOADED = "loaded"
    LAUNCHED = "launched"
    GONE = "gone"


class Progress:
    """A spinner on stderr while waiting, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.label = ""
        self._task: asyncio.Task[None] | None = None
        self._shown = False

    async def _spin(self) -> None:
        i = 0
        while True:
            sys.stderr.write(f"\r\033[K{FRAMES[i % len(FRAMES)]} {self.label}")
            sys.stderr.flush()
            self._shown = True
            i += 1
            await asyncio.sleep(0.1)

    def start(self, label: str) -> None:
        self.label = label
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._spin())

    def _clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._clear()

    def line(self, text: str) -> None:
        self._clear()
        echo(text)

    def note(self, text: str) -> None:
        self._clear()
        echo(text, err=True)


def reached(v: UnitView, goal: Goal) -> bool:
    if goal is Goal.GONE:
        return v.record is None and not v.reported
    if goal is Goal.LOADED:
        desired = v.record.desired if v.record is not None else None
        return v.current is TargetState.LOADED or (
            v.current is TargetState.LAUNCHED and desired is TargetState.LAUNCHED
        )
    if goal is Goal.INACTIVE:  # unloaded: off its machine, as list-units then shows
        return v.current is TargetState.INACTIVE and not v.reported
    if goal is Goal.LAUNCHED:  # settled, and not failed (finished counts: it ran)
        return v.current is TargetState.LAUNCHED and v.settled and not v.failed
    return v.current.value == goal.value


def failure(v: UnitView, goal: Goal, snap: Snapshot) -> str | None:
    """Why the unit cannot reach ``goal``: fleet's operation failed on its machine."""
    where = machine_legend(v.machine, snap.machines, False) if v.machine else ""
    st = v.state
    if goal is Goal.LAUNCHED and st is not None and st.fleet == "launched":
        op, message = error_parts(st.error)
        if op == "start":
            return f"Unit {v.name} failed to start on {where}: {message}"
        if v.failed:
            return f"Unit {v.name} failed on {where}: systemd says {st.active_state}/{st.sub_state}"
    if goal is Goal.LOADED and st is not None and st.fleet == "launched":
        op, message = error_parts(st.error)
        if op == "stop":
            return f"Unit {v.name} could not be stopped on {where}: {message}"
    if goal in (Goal.INACTIVE, Goal.GONE):
        for s in v.reported:
            op, message = error_parts(s.error)
            if op == "unload":
                on = machine_legend(s.machine_id, snap.machines, False)
                return f"Unit {v.name} could not be stopped and unloaded on {on}: {message}"
    return None


def _label(pending: Sequence[str]) -> str:
    shown = ", ".join(pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
    return f"Waiting for {shown}..."


@dataclass
class Tracker:
    """Follows units towards their goals, one snapshot at a time (pure).

    ``observe`` returns what to print: ("out", text) for a unit that got
    there, ("err", text) for a scheduling reason (said once per reason).
    Units that failed or vanished go to ``errors``; what is left is ``pending``.
    """

    pending: dict[str, Goal]
    done_message: Mapping[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stale_failed: set[str] | None = None  # failed before we started: not our verdict
    told: dict[str, str] = field(default_factory=dict)

    def observe(self, snap: Snapshot) -> list[tuple[str, str]]:
        printed: list[tuple[str, str]] = []
        seen = views(snap, self.pending)
        if self.stale_failed is None:
            self.stale_failed = {
                n for n, v in seen.items() if v.failed and v.state and not v.state.fleet}
        for name, v in seen.items():
            goal = self.pending[name]
            if not v.failed:
                self.stale_failed.discard(name)
            fault = failure(v, goal, snap)
            if fault is not None:
                self.errors.append(fault)
            elif reached(v, goal):
                msg = self.done_message.get(name)
                if msg is None:
                    msg = state_message(v, snap.machines)
                if msg:
                    printed.append(("out", msg))
            elif v.record is None and goal is not Goal.GONE:
                self.errors.append(f"unit {name} was destroyed while waiting for it")
            elif goal is Goal.LAUNCHED and v.failed and name not in self.stale_failed:
                # an agent that does not report fleet's record: a failure seen before
                # the command (stale_failed) is not its verdict
                assert v.state is not None and v.machine is not None
                where = machine_legend(v.machine, snap.machines, False)
                st = v.state
                self.errors.append(
                    f"Unit {name} failed on {where}: systemd says {st.active_state}/{st.sub_state}"
                )
            else:
                if v.waiting and self.told.get(name) != v.waiting:
                    self.told[name] = v.waiting
                    printed.append(("err", f"Unit {name} is waiting to be scheduled: {v.waiting}"))
                continue
            del self.pending[name]
        return printed

    def still_waiting(self, snap: Snapshot) -> list[str]:
        """What each pending unit is still waiting for (said once after a while):
        the first NOTES_SHOWN units, then how many more."""
        notes: list[str] = []
        seen = views(snap, self.pending)
        for name, goal in list(self.pending.items())[:NOTES_SHOWN]:
            v = seen[name]
            if goal is Goal.GONE:
                machines = sorted({s.machine_id for s in v.reported})
                shown = ", ".join(machine_legend(m, snap.machines, False) for m in machines)
                notes.append(f"Still waiting for {name} to be removed from {shown or '-'}")
            elif v.machine is None:
                notes.append(f"Still waiting for {name} to be scheduled on a machine")
            else:
                where = machine_legend(v.machine, snap.machines, False)
                st = v.state
                systemd = f"{st.active_state}/{st.sub_state}" if st else "not reported"
                now = f"{v.current}, {systemd}"
                notes.append(f"Still waiting for {name} to report state {goal} on {where} "
                             f"(now {now})")
        if len(self.pending) > NOTES_SHOWN:
            notes.append(f"... and {len(self.pending) - NOTES_SHOWN} more units")
        return notes

    def timed_out(self, last: Snapshot | None) -> list[str]:
        errors: list[str] = []
        seen = views(last, self.pending) if last is not None else {}
        for name, goal in self.pending.items():
            v = seen.get(name)
            if goal is not Goal.GONE and v is not None and v.waiting and not v.targets:
                # the engine's reason was printed when it came (observe)
                errors.append(f"timed out waiting for unit {name} to be scheduled on a machine")
                continue
            if goal is not Goal.GONE:
                errors.append(f"timed out waiting for unit {name} to report state {goal}")
                continue
            where = ""
            machines = sorted({s.machine_id for s in last.states if s.name == name}) if last else []
            if last is not None and machines:
                shown = ", ".join(machine_legend(m, last.machines, False) for m in machines)
                where = f" (still reported by {shown})"
            errors.append(f"timed out waiting for unit {name} to be removed{where}")
        return errors


async def wait_units(
    client: FleetClient,
    goals: Mapping[str, Goal],
    attempts: int,
    progress: Progress,
    done_message: Mapping[str, str] | None = None,
) -> list[str]:
    """Wait until each unit reaches its goal; return the errors (empty: all done).

    Prints fleet's ``Unit X launched on M`` as each unit gets there (or
    ``done_message[X]``; nothing when that is empty), the engine's reason once
    when a unit waits for a machine, and stops early for a unit that reports ``failed`` after start.
    """
    tracker = Tracker(dict(goals), done_message or {})
    if not goals:
        return []
    last: Snapshot | None = None
    timeout = attempts * ATTEMPT_INTERVAL if attempts > 0 else None
    progress.start(_label(list(goals)))

    async def note_when_slow() -> None:
        await asyncio.sleep(SLOW_NOTE_AFTER)
        if last is not None:
            for text in tracker.still_waiting(last):
                progress.note(text)

    slow = asyncio.get_running_loop().create_task(note_when_slow())
    try:
        async with asyncio.timeout(timeout), aclosing(client.watch_units(list(goals))) as snaps:
            async for snap in snaps:
                last = snap
                for stream, text in tracker.observe(snap):
                    (progress.line if stream == "out" else progress.note)(text)
                if not tracker.pending:
                    break
                progress.label = _label(list(tracker.pending))
    except TimeoutError:
        pass
    finally:
        slow.cancel()
        await progress.stop()
    return tracker.errors + tracker.timed_out(last)
