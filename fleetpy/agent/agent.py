"""The agent: make this machine's systemd match its schedule, report what it does.

Reads: ``schedule/<machine_id>/`` (one watch). Writes: ``states/<machine_id>/``
and ``refused/<machine_id>/`` on the agent's lease. A unit of a name the
machine has outside fleet is never loaded here (fleetpy.agent.foreign decides,
fleetpy.agent.refusals publishes).
Decisions come from the pure planner (fleetpy.agent.plan); this module only
feeds it: it watches the schedule, reads systemd and runs a reconcile pass. The
pass's tasks are executed by fleetpy.agent.execute, one log line per task with
the planner's reason, and states are reported by fleetpy.agent.report (both
mixins of ``Agent``, sharing its state and the ``fleetpy.agent`` logger).

The executor keeps fleet's record of what it loaded and launched here
(fleetpy.agent.record, persisted in the state directory) and the clock:
failed tasks and their back-off (fleetpy.agent.retry), and the settling of
a start (fleetpy.agent.settle: ``starting`` until it settled, then
``launched``, so that a unit failing at once is never seen as launched). A
daemon-reload runs only when a unit file really changed in the pass, and not
when every file it wrote is a unit systemd had not loaded (fleetpy.agent.reload).
Units with ``[X-Fleet] StopWhenDisconnected=true`` are stopped while this
machine cannot renew its lease in time (fleetpy.agent.fencing measures, the
planner decides).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from fleetpy.agent import reload
from fleetpy.agent.execute import RETRY_DELAY, Executing, desired_key
from fleetpy.agent.fencing import Fencing, fenced
from fleetpy.agent.machine_log import MachineLog
from fleetpy.agent.plan import (
    CurrentUnit,
    DesiredUnit,
    TaskKind,
    fresh_loads,
    plan_agent,
)
from fleetpy.agent.record import DEFAULT_STATE_DIR, RecordFile
from fleetpy.agent.refusals import Refusals
from fleetpy.agent.report import Reporting
from fleetpy.agent.retry import Failures
from fleetpy.agent.settle import Settling
from fleetpy.model.types import ScheduledUnit, UnitState
from fleetpy.registry.base import Lease, Registry, RegistryError, WatchUpdate
from fleetpy.registry.codec import decode_scheduled
from fleetpy.registry.unreadable import REPORTS, Unreadable
from fleetpy.registry.view import apply_update
from fleetpy.systemd.base import SystemdError, UnitManager, UnitStatus, check_unit_name

log = logging.getLogger("fleetpy.agent")


class Agent(Executing, Reporting):
    """Reconciles one machine. Never stops a unit except when its plan says so."""

    def __init__(
        self,
        registry: Registry,
        manager: UnitManager,
        machine_id: str,
        lease: Callable[[], Lease],
        state_dir: Path = DEFAULT_STATE_DIR,
        since_renewal: Callable[[], float] | None = None,
        ttl: float = 30.0,
    ) -> None:
        """``since_renewal``: seconds since this machine's lease was last renewed
        (infinite once lost), for StopWhenDisconnected (None: never fenced)."""
        self._registry = registry
        self._manager = manager
        self._machine_id = machine_id
        self._log = MachineLog(log, machine_id)  # every line names this machine
        self._lease = lease
        self._desired: dict[str, DesiredUnit] = {}
        self._skipped: dict[str, Unreadable] = {}  # schedule entries that do not decode
        self._said: dict[tuple[str, str], str] = {}  # (task, unit) -> the error last logged
        self._record_file = RecordFile(state_dir)
        self._record = self._record_file.load()
        self._record_saved = dict(self._record)
        self._failures = Failures()
        self._retry_timer: asyncio.TimerHandle | None = None
        self._settling = Settling()
        self._synced = False
        self._wake = asyncio.Event()
        self._report_wake = asyncio.Event()
        self._pending: dict[str, UnitStatus] = {}
        # every state this agent reported, as last written: equal ones are not written again
        self._written: dict[str, UnitState] = {}
        self._refusals = Refusals(registry, manager, machine_id, lease, self._log)
        self._kept: dict[str, str] = {}  # running, unscheduled, kept (fleetpy.agent.hold)
        self._hold_until = 0.0  # loop time: end of the window after registering again
        self.fencing = None if since_renewal is None else Fencing(
            registry, machine_id, since_renewal, ttl, lambda: self._desired, self._wake.set,
            self._log)
        self.converged = asyncio.Event()
        self.observe_pass: Callable[[float], None] | None = None  # fleetd's metrics

    async def run(self) -> None:
        """Run until cancelled: watch the schedule, reconcile, report states."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_schedule(), name="agent-watch")
            group.create_task(self._reconcile_loop(), name="agent-reconcile")
            group.create_task(self._follow_systemd(), name="agent-systemd")
            group.create_task(self._report_loop(), name="agent-report")
            group.create_task(self._settle_loop(), name="agent-settle")
            group.create_task(self._refusals.recheck(self._wake.set), name="agent-refusals")
            if self.fencing is not None:
                group.create_task(self.fencing.run(), name="agent-fencing")

    def registered_again(self, window: float) -> None:
        """The machine registered on a new lease: for ``window`` seconds, keep the
        units that only lost their schedule entry because it was gone (hold.py)."""
        loop = asyncio.get_running_loop()
        self._hold_until = loop.time() + window
        loop.call_at(self._hold_until + 0.01, self._wake.set)  # then unload what is left
        self._wake.set()

    # schedule ----------------------------------------------------------------
    async def _watch_schedule(self) -> None:
        prefix = f"schedule/{self._machine_id}/"
        async for update in self._registry.watch(prefix):
            self._apply(update, prefix)
            self._synced = True
            self._wake.set()

    def _apply(self, update: WatchUpdate, prefix: str) -> None:
        before = dict(self._skipped)
        apply_update(
            self._desired,
            update,
            lambda key: key[len(prefix):],
            lambda key, value, _rev: _desired(decode_scheduled(key, value)),
            self._skipped,
            self._registry.prefix,
        )
        REPORTS.sync(before, self._skipped)

    # reconcile ---------------------------------------------------------------
    async def _reconcile_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._synced:
                continue
            started = time.perf_counter()
            try:
                await self._reconcile()
                if self.observe_pass is not None:
                    self.observe_pass(time.perf_counter() - started)
            except (SystemdError, RegistryError) as exc:
                self._log.warning("reconcile failed, retrying in %.0fs: %s", RETRY_DELAY, exc)
                await asyncio.sleep(RETRY_DELAY)
                self._wake.set()
            except Exception:
                self._log.exception("reconcile pass crashed, retrying in %.0fs", RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)
                self._wake.set()

    async def _current(self) -> dict[str, CurrentUnit]:
        files = self._manager.loaded_files()
        statuses = await self._manager.statuses(sorted(files)) if files else {}
        current = {}
        for name, file_hash in files.items():
            status = statuses.get(name)
            current[name] = CurrentUnit(
                name=name,
                file_hash=file_hash,
                load_state=status.load_state if status else "not-found",
                active_state=status.active_state if status else "inactive",
                sub_state=status.sub_state if status else "dead",
            )
        return current

    async def _reconcile(self) -> None:
        desired = dict(self._desired)
        current = await self._current()
        # A unit whose schedule entry does not decode stays as it is: unreadable
        # is not unscheduled, so it is neither unloaded nor stopped.
        frozen = {rel[len(f"schedule/{self._machine_id}/"):] for rel in self._skipped}
        current = {name: unit for name, unit in current.items() if name not in frozen}
        desired = await self._refusals.without_foreign(desired, current)
        cleared = self._failures.forget_stale({n: desired_key(d) for n, d in desired.items()})
        for name in [n for n in self._record
                     if n not in current and n not in desired and n not in frozen]:
            del self._record[name]  # its file is gone: nothing of fleet's left here
        now = asyncio.get_running_loop().time()
        fence = self.fencing.fence() if self.fencing is not None else None
        unscheduled = sorted(n for n, u in current.items()
                             if n not in desired and u.file_hash is not None)
        kept = await self._keep_unscheduled(unscheduled, now, fence is not None and fence.cut_off)
        holding = self._failures.holding(now) | set(kept)
        tasks = plan_agent(desired, current, self._record, holding, fence)
        if not tasks:
            if not holding:
                self.converged.set()
            self._save_record()
            await self._report_current(current)
            await self._report_now(sorted(n for n in cleared if n in current))
            return
        self.converged.clear()
        await self._manager.watch_units(set(desired) | set(current))
        fresh = await reload.new_to_systemd(self._manager, fresh_loads(tasks))
        failed_units: set[str] = set()
        files_changed = 0
        reload_failed = False
        for task in tasks:
            if task.unit in failed_units:
                continue  # an earlier step for this unit failed: retried after its back-off
            if task.kind == TaskKind.RELOAD and not files_changed:
                self._log.debug("daemon-reload skipped: no unit file changed")
                continue
            if task.kind == TaskKind.RELOAD and fresh:
                loaded = [t.unit for t in tasks
                          if t.kind == TaskKind.LOAD and t.unit not in failed_units]
                found = await reload.found_without_reload(self._manager, loaded, self._log)
                if found is not None:
                    failed_units |= await self._unloadable(loaded, desired, found)
                    continue
            if await self._execute(task, desired):
                files_changed += task.kind in (TaskKind.LOAD, TaskKind.UNLOAD)
                if task.kind == TaskKind.RELOAD:
                    loaded = [t.unit for t in tasks
                              if t.kind == TaskKind.LOAD and t.unit not in failed_units]
                    failed_units |= await self._unloadable(loaded, desired)
            elif task.unit:
                failed_units.add(task.unit)
            else:
                reload_failed = True
        self._save_record()
        files = self._manager.loaded_files()
        touched = {t.unit for t in tasks if t.unit} | set(cleared)
        gone = [n for n in touched if n not in desired and n not in files]
        if gone:
            await self._forget_states(gone)
        await self._report_now(sorted(n for n in touched if n in files))
        self._arm_retry()
        if reload_failed:
            await asyncio.sleep(RETRY_DELAY)
        self._wake.set()


def _desired(unit: ScheduledUnit) -> DesiredUnit:
    """The planner's view of an entry; ValueError for a name no file may have."""
    check_unit_name(unit.name)
    return DesiredUnit(name=unit.name, hash=unit.hash, target=unit.target,
                       contents=unit.contents, fenced=fenced(unit.name, unit.contents))
