"""The agent: make this machine's systemd match its schedule, report what it does.

Reads: ``schedule/<machine_id>/`` (one watch). Writes: ``states/<machine_id>/``
and ``refused/<machine_id>/`` on the agent's lease. A unit of a name the
machine has outside fleet is never loaded here (fleetpy.agent.foreign decides,
fleetpy.agent.refusals publishes).
Decisions come from the pure planner (fleetpy.agent.plan); this module only
feeds it and executes its tasks, one log line per task with the planner's reason.

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
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from fleetpy.agent import hold, reload
from fleetpy.agent.fencing import Fencing, fenced
from fleetpy.agent.machine_log import MachineLog
from fleetpy.agent.pace import ReportPace
from fleetpy.agent.plan import (
    BUSY_STATES,
    CurrentUnit,
    DesiredUnit,
    Task,
    TaskKind,
    fresh_loads,
    plan_agent,
    start_due,
)
from fleetpy.agent.record import DEFAULT_STATE_DIR, RecordFile
from fleetpy.agent.refusals import Refusals
from fleetpy.agent.retry import Failures, Key
from fleetpy.agent.settle import Settling
from fleetpy.model.types import ScheduledUnit, UnitState
from fleetpy.registry.base import Lease, Registry, RegistryError, WatchUpdate
from fleetpy.registry.codec import decode_scheduled
from fleetpy.registry.unreadable import REPORTS, Unreadable
from fleetpy.registry.view import apply_update
from fleetpy.systemd.base import SystemdError, UnitManager, UnitStatus, check_unit_name

log = logging.getLogger("fleetpy.agent")

RETRY_DELAY = 1.0


class Agent:
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
        cleared = self._failures.forget_stale({n: _key(d) for n, d in desired.items()})
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

    async def _keep_unscheduled(
        self, names: list[str], now: float, cut_off: bool = False
    ) -> dict[str, str]:
        """Of the units running here that nothing schedules here, those kept for now
        (fleetpy.agent.hold), each said once. ``cut_off``: the lease was not renewed in
        time (StopWhenDisconnected): kept without asking etcd, which would only delay
        the fenced units' stop by its timeout."""
        kept: dict[str, str] = {}
        if names:
            lease = self._lease()
            if cut_off:
                kept = dict.fromkeys(names, hold.KEEP_CUT_OFF)
            elif not lease.is_alive() or not await self._registry.lease_alive(lease):
                kept = dict.fromkeys(names, hold.KEEP_LEASE_LOST)
            elif now < self._hold_until:
                records = await self._registry.get_units(names)
                waiting = await self._registry.get_waiting(names)
                here = {e.name for e in await self._registry.list_schedule(self._machine_id)}
                kept = hold.kept_after_return(names, records, waiting, here)
        for name, why in kept.items():
            if self._kept.get(name) != why:
                self._log.info("keeping %s running although not scheduled here: %s", name, why)
        self._kept = kept
        return kept

    async def _unloadable(self, names: list[str], desired: dict[str, DesiredUnit],
                          statuses: dict[str, UnitStatus] | None = None) -> set[str]:
        """Of the units loaded this pass, those systemd cannot load after the reload:
        held (no start, no load and daemon-reload again) until their desired state
        changes, with systemd's load state as the error they report. ``statuses``:
        systemd's, read after the files were written (None: read here)."""
        if not names:
            return set()
        try:
            if statuses is None:
                statuses = await self._manager.statuses(names)
        except SystemdError as exc:
            self._log.warning("cannot read the load state of %s: %s", names, exc)
            return set()
        stuck = set()
        for name in names:
            status = statuses.get(name)
            if status is None or status.load_state == "loaded":
                continue
            why = (f"load: systemd cannot load {name} (load state {status.load_state}); "
                   "not tried again until the unit changes")
            self._failures.stuck(name, _key(desired.get(name)), why)
            self._log.error("%s", why)
            stuck.add(name)
        return stuck

    async def _execute(self, task: Task, desired: dict[str, DesiredUnit]) -> bool:
        """Run one task; a failure is logged and does not abort the others."""
        self._log.info("%s %s: %s", task.kind.value, task.unit or "-", task.reason)
        name = task.unit
        try:
            if task.kind == TaskKind.UNLOAD:
                await self._stop(name)
                await self._manager.remove_unit(name)
                self._record.pop(name, None)
            elif task.kind == TaskKind.LOAD:
                await self._manager.write_unit(name, task.contents or "")
            elif task.kind == TaskKind.RELOAD:
                await self._manager.daemon_reload()
            elif task.kind == TaskKind.STOP:
                await self._stop(name)
            elif task.kind == TaskKind.START:
                assert task.record is not None
                self._record[name] = task.record  # attempted: not started again by itself
                await self._manager.start_unit(name)
                self._settling.started(name, asyncio.get_running_loop().time())
            if task.record is not None:
                self._record[name] = task.record
        except Exception as exc:  # one unit's failure never stops the others
            retry = self._failed(task, _key(desired.get(name)), exc) if name else ""
            what = (task.kind.value, name or "-")
            message = str(exc) or type(exc).__name__
            if self._said.get(what) != message:  # the same failure again is not news
                self._said[what] = message
                self._log.error("%s %s failed%s: %s", *what, retry, message,
                          exc_info=not isinstance(exc, SystemdError | OSError | ValueError))
            return False
        self._said.pop((task.kind.value, name or "-"), None)
        if name and task.kind != TaskKind.RECORD:
            self._failures.succeeded(name)
        return True

    async def _stop(self, name: str) -> None:
        """Stop NAME; a refused stop of a unit that is down anyway is as good as done."""
        try:
            await self._manager.stop_unit(name)
        except SystemdError as exc:
            status = (await self._manager.statuses([name])).get(name)
            if status is None or status.active_state in BUSY_STATES:
                raise
            self._log.info("stop %s failed (%s) but systemd says %s/%s: taken as stopped",
                     name, exc, status.active_state, status.sub_state)

    def _failed(self, task: Task, key: Key, exc: Exception) -> str:
        """Keep the error for the unit's report; hold the unit back unless a start failed.

        Returns what happens next, for the log line."""
        retry = task.kind != TaskKind.START
        now = asyncio.get_running_loop().time()
        failure = self._failures.failed(task.unit, key, f"{task.kind.value}: {exc}", now, retry)
        return f" (next try in {failure.delay:.0f}s)" if retry else " (not retried)"

    def _arm_retry(self) -> None:
        """Wake the reconcile loop when the first unit in back-off may be tried again."""
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        at = self._failures.next_retry()
        if at is not None:
            self._retry_timer = asyncio.get_running_loop().call_at(at, self._wake.set)

    def _save_record(self) -> None:
        if self._record == self._record_saved:
            return
        try:
            self._record_file.save(self._record)
        except OSError as exc:
            self._log.error("cannot save fleet's unit record %s (will retry): %s",
                      self._record_file.path, exc)
            return
        self._record_saved = dict(self._record)

    # settling of starts ------------------------------------------------------
    async def _settle_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = await self._settling.next_due(loop.time)
            try:
                statuses = await self._manager.statuses(due)
            except SystemdError as exc:
                self._log.warning("cannot read the state of %s after their start: %s", due, exc)
                statuses = {}
            now = loop.time()
            for name in due:
                if self._settling.still_queued(statuses.get(name), now):
                    continue  # its start job waits (After= a unit still starting)
                self._settle(name, statuses.get(name))

    def _settle(self, name: str, status: UnitStatus | None) -> None:
        """The start of NAME settled: report it with its state (launched from now on)."""
        self._settling.settled(name)
        if status is not None:
            self._pending[name] = status
        self._report_wake.set()

    def _follow_start(self, status: UnitStatus) -> None:
        """A settling unit that went up, then down (or reached active/exited), settles now."""
        if self._settling.settles_now(status, asyncio.get_running_loop().time()):
            self._settle(status.name, status)

    # state reporting ---------------------------------------------------------
    async def _follow_systemd(self) -> None:
        async for status in self._manager.changes():
            if status.name in self._desired or status.name in self._written:
                self._pending[status.name] = status
                self._report_wake.set()
            if status.active_state not in BUSY_STATES and start_due(
                    self._desired.get(status.name), self._record.get(status.name)):
                self._wake.set()  # it was stopping (a fenced stop): started now that it is down
            if status.name in self._settling:
                self._follow_start(status)

    async def _report_loop(self) -> None:
        pace = ReportPace(self._report_wake)  # few transactions (fleetpy.agent.pace)
        while True:
            await self._report_wake.wait()
            await pace.turn(lambda: any(n in self._settling for n in self._pending))
            self._report_wake.clear()
            batch, self._pending = self._pending, {}
            if batch:
                pace.wrote()
                await self._put_states(list(batch.values()))

    async def _report_now(self, names: list[str]) -> None:
        if names:
            statuses = await self._manager.statuses(names)
            for status in statuses.values():
                self._pending[status.name] = status
            self._report_wake.set()

    async def _report_current(self, current: dict[str, CurrentUnit]) -> None:
        missing = [n for n in current if n in self._desired and n not in self._written]
        await self._report_now(missing)

    async def _put_states(self, statuses: list[UnitStatus]) -> None:
        files = self._manager.loaded_files()
        states = [
            UnitState(
                name=s.name,
                machine_id=self._machine_id,
                load_state=s.load_state,
                active_state=s.active_state,
                sub_state=s.sub_state,
                hash=files.get(s.name, ""),
                fleet=self._fleet_state(s.name),
                error=self._failures.error(s.name),
            )
            for s in statuses
            if s.name in files
        ]
        states = [s for s in states if self._written.get(s.name) != s]
        if not states:
            return
        try:
            await self._registry.put_unit_states(states, self._lease())
        except RegistryError as exc:
            self._log.warning("cannot report %d unit states, will retry: %s", len(states), exc)
            for s in statuses:
                self._pending.setdefault(s.name, s)
            await asyncio.sleep(RETRY_DELAY)
            self._report_wake.set()
            return
        self._written.update((s.name, s) for s in states)

    def _fleet_state(self, name: str) -> str:
        if name in self._settling:
            return "starting"
        record = self._record.get(name)
        return str(record.state) if record is not None else ""

    async def _forget_states(self, names: list[str]) -> None:
        for name in names:
            self._pending.pop(name, None)
        with contextlib.suppress(RegistryError):
            await self._registry.delete_unit_states(self._machine_id, names)
            for name in names:
                self._written.pop(name, None)

    async def report_all(self) -> None:
        """Re-report every loaded unit and refusal (after re-registering on a new lease)."""
        self._written.clear()
        await self._refusals.publish_again()
        await self._report_now(sorted(self._manager.loaded_files()))


def _key(want: DesiredUnit | None) -> Key:
    return None if want is None else (want.hash, str(want.target))


def _desired(unit: ScheduledUnit) -> DesiredUnit:
    """The planner's view of an entry; ValueError for a name no file may have."""
    check_unit_name(unit.name)
    return DesiredUnit(name=unit.name, hash=unit.hash, target=unit.target,
                       contents=unit.contents, fenced=fenced(unit.name, unit.contents))
