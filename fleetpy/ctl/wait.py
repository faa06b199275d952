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

import click

from fleetpy.api.snapshot import Snapshot
from fleetpy.ctl.client import FleetClient
from fleetpy.ctl.state import UnitView, machine_legend, state_message, view
from fleetpy.model.types import TargetState

ATTEMPT_INTERVAL = 0.5
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
        click.echo(text)

    def note(self, text: str) -> None:
        self._clear()
        click.echo(text, err=True)


def reached(v: UnitView, goal: Goal) -> bool:
    if goal is Goal.GONE:
        return v.record is None and not v.reported
    if goal is Goal.LOADED:
        desired = v.record.desired if v.record is not None else None
        return v.current is TargetState.LOADED or (
            v.current is TargetState.LAUNCHED and desired is TargetState.LAUNCHED
        )
    return v.current.value == goal.value


def _label(pending: Sequence[str]) -> str:
    shown = ", ".join(pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
    return f"Waiting for {shown}..."


async def wait_units(
    client: FleetClient,
    goals: Mapping[str, Goal],
    attempts: int,
    progress: Progress,
    done_message: Mapping[str, str] | None = None,
) -> list[str]:
    """Wait until each unit reaches its goal; return the errors (empty: all done).

    Prints fleet's ``Unit X launched on M`` as each unit gets there (or
    ``done_message[X]``), the engine's reason once when a unit waits for a
    machine, and stops early for a unit that reports ``failed`` after start.
    """
    pending = dict(goals)
    errors: list[str] = []
    if not pending:
        return errors
    stale_failed: set[str] | None = None  # failed before we started: not our verdict
    told: dict[str, str] = {}
    last: Snapshot | None = None
    timeout = attempts * ATTEMPT_INTERVAL if attempts > 0 else None
    progress.start(_label(list(pending)))
    try:
        async with asyncio.timeout(timeout):
            async for snap in client.watch_units(list(goals)):
                last = snap
                views = {name: view(snap, name) for name in pending}
                if stale_failed is None:
                    stale_failed = {n for n, v in views.items() if v.failed}
                for name, v in views.items():
                    goal = pending[name]
                    if not v.failed:
                        stale_failed.discard(name)
                    if reached(v, goal):
                        msg = (done_message or {}).get(name) or state_message(v, snap.machines)
                        progress.line(msg)
                    elif v.record is None and goal is not Goal.GONE:
                        errors.append(f"unit {name} was destroyed while waiting for it")
                    elif goal is Goal.LAUNCHED and v.failed and name not in stale_failed:
                        assert v.state is not None and v.machine is not None
                        where = machine_legend(v.machine, snap.machines, False)
                        errors.append(
                            f"unit {name} failed on {where} "
                            f"(ActiveState={v.state.active_state}, SubState={v.state.sub_state})"
                        )
                    else:
                        if v.waiting and told.get(name) != v.waiting:
                            told[name] = v.waiting
                            progress.note(f"Unit {name} is waiting to be scheduled: {v.waiting}")
                        continue
                    del pending[name]
                if not pending:
                    break
                progress.label = _label(list(pending))
    except TimeoutError:
        pass
    finally:
        await progress.stop()
    for name, goal in pending.items():
        if goal is Goal.GONE:
            where = ""
            if last is not None:
                machines = {s.machine_id for s in last.states if s.name == name}
                where = " (still reported by " + ", ".join(
                    machine_legend(m, last.machines, False) for m in sorted(machines)) + ")"
            errors.append(f"timed out waiting for unit {name} to be removed{where}")
        else:
            errors.append(f"timed out waiting for unit {name} to report state {goal}")
    return errors
