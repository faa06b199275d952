"""The agent: make this machine's systemd match its schedule, report what it does.

Reads: ``schedule/<machine_id>/`` (one watch). Writes: ``states/<machine_id>/``
and ``refused/<machine_id>/`` on the agent's lease. A unit of a name the
machine has outside fleet is never loaded here (fleetpy.agent.foreign).
Decisions come from the pure planner (fleetpy.agent.plan); this module only
feeds it and executes its tasks, one log line per task with the planner's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from fleetpy.agent import foreign
from fleetpy.agent.plan import CurrentUnit, DesiredUnit, Task, TaskKind, plan_agent
from fleetpy.model.types import ScheduledUnit, TargetState, UnitState
from fleetpy.registry.base import Lease, Registry, RegistryError, WatchUpdate
from fleetpy.registry.codec import decode_scheduled
from fleetpy.registry.view import apply_update
from fleetpy.systemd.base import SystemdError, UnitManager, UnitStatus

log = logging.getLogger("fleetpy.agent")

RETRY_DELAY = 1.0
REFUSAL_RECHECK = 30.0  # while refusing units: is the host's unit still there?


class Agent:
    """Reconciles one machine. Never stops a unit except when its plan says so."""

    def __init__(
        self,
        registry: Registry,
        manager: UnitManager,
        machine_id: str,
        lease: Callable[[], Lease],
    ) -> None:
        self._registry = registry
        self._manager = manager
        self._machine_id = machine_id
        self._lease = lease
        self._desired: dict[str, DesiredUnit] = {}
        self._attempted: dict[str, tuple[str, TargetState]] = {}
        self._synced = False
        self._wake = asyncio.Event()
        self._report_wake = asyncio.Event()
        self._pending: dict[str, UnitStatus] = {}
        self._reported: set[str] = set()
        self._refusals: dict[str, str] | None = None  # None: not read back yet
        self.converged = asyncio.Event()
        self.observe_pass: Callable[[float], None] | None = None  # fleetd's metrics

    async def run(self) -> None:
        """Run until cancelled: watch the schedule, reconcile, report states."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_schedule(), name="agent-watch")
            group.create_task(self._reconcile_loop(), name="agent-reconcile")
            group.create_task(self._follow_systemd(), name="agent-systemd")
            group.create_task(self._report_loop(), name="agent-report")
            group.create_task(self._recheck_refusals(), name="agent-refusals")

    # schedule ----------------------------------------------------------------
    async def _watch_schedule(self) -> None:
        prefix = f"schedule/{self._machine_id}/"
        async for update in self._registry.watch(prefix):
            self._apply(update, prefix)
            self._synced = True
            self._wake.set()

    def _apply(self, update: WatchUpdate, prefix: str) -> None:
        changes = apply_update(
            self._desired,
            update,
            lambda key: key[len(prefix):],
            lambda key, value, _rev: _desired(decode_scheduled(key, value)),
        )
        for name, _, want in changes:
            if want is None or want.target != TargetState.LAUNCHED:
                # stopped, unloaded or gone on purpose: the next "launched" is a new start
                self._attempted.pop(name, None)

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
                log.warning("reconcile failed, retrying in %.0fs: %s", RETRY_DELAY, exc)
                await asyncio.sleep(RETRY_DELAY)
                self._wake.set()
            except Exception:
                log.exception("reconcile pass crashed, retrying in %.0fs", RETRY_DELAY)
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
        desired = await self._without_foreign(desired, current)
        tasks = plan_agent(desired, current, self._attempted)
        if not tasks:
            self.converged.set()
            await self._report_current(current)
            return
        self.converged.clear()
        await self._manager.watch_units(set(desired) | set(current))
        failed = False
        for task in tasks:
            if not await self._execute(task, desired):
                failed = True
        touched = {t.unit for t in tasks if t.unit}
        gone = [n for n in touched if n not in desired]
        if gone:
            await self._forget_states(gone)
        await self._report_now(sorted(n for n in touched if n in desired))
        if failed:
            await asyncio.sleep(RETRY_DELAY)
        self._wake.set()

    async def _without_foreign(
        self, desired: dict[str, DesiredUnit], current: dict[str, CurrentUnit]
    ) -> dict[str, DesiredUnit]:
        """``desired`` less the units this machine has outside fleet (published as refused)."""
        if self._refusals is None:  # a restarted fleetd: its refusals are still on the lease
            found = await self._registry.list_refusals(self._machine_id)
            self._refusals = {name: reason for (_, name), reason in found.items()}
        unloaded = [
            n for n, u in desired.items() if u.target != TargetState.INACTIVE and n not in current
        ]
        checked = foreign.to_check(unloaded, self._refusals)
        found_here = await self._manager.outside_fleet(checked) if checked else {}
        result = foreign.decide_refusals(self._machine_id, checked, found_here, self._refusals)
        if result.changes:
            await self._registry.put_refusals(self._machine_id, result.changes, self._lease())
            for name, reason in result.changes.items():
                if reason is None:
                    log.info("unit %s: no longer exists here outside fleet, not refused", name)
                else:
                    log.warning("not loading %s: %s", name, reason)
        self._refusals = result.now
        return {n: u for n, u in desired.items() if n not in result.now or n in current}

    async def _recheck_refusals(self) -> None:
        while True:
            await asyncio.sleep(REFUSAL_RECHECK)
            if self._refusals:
                self._wake.set()

    async def _execute(self, task: Task, desired: dict[str, DesiredUnit]) -> bool:
        """Run one task; a failure is logged and does not abort the others."""
        log.info("%s %s: %s", task.kind.value, task.unit or "-", task.reason)
        try:
            if task.kind == TaskKind.UNLOAD:
                await self._manager.stop_unit(task.unit)
                await self._manager.remove_unit(task.unit)
                self._attempted.pop(task.unit, None)
            elif task.kind == TaskKind.LOAD:
                await self._manager.write_unit(task.unit, task.contents or "")
            elif task.kind == TaskKind.RELOAD:
                await self._manager.daemon_reload()
            elif task.kind == TaskKind.STOP:
                await self._manager.stop_unit(task.unit)
            elif task.kind == TaskKind.START:
                unit = desired[task.unit]
                self._attempted[task.unit] = (unit.hash, unit.target)
                await self._manager.start_unit(task.unit)
        except (SystemdError, OSError) as exc:
            log.error("%s %s failed: %s", task.kind.value, task.unit or "-", exc)
            return False
        return True

    # state reporting ---------------------------------------------------------
    async def _follow_systemd(self) -> None:
        async for status in self._manager.changes():
            if status.name in self._desired or status.name in self._reported:
                self._pending[status.name] = status
                self._report_wake.set()

    async def _report_loop(self) -> None:
        while True:
            await self._report_wake.wait()
            self._report_wake.clear()
            batch, self._pending = self._pending, {}
            if batch:
                await self._put_states(list(batch.values()))

    async def _report_now(self, names: list[str]) -> None:
        if names:
            statuses = await self._manager.statuses(names)
            for status in statuses.values():
                self._pending[status.name] = status
            self._report_wake.set()

    async def _report_current(self, current: dict[str, CurrentUnit]) -> None:
        missing = [n for n in current if n in self._desired and n not in self._reported]
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
            )
            for s in statuses
            if s.name in files
        ]
        if not states:
            return
        try:
            await self._registry.put_unit_states(states, self._lease())
        except RegistryError as exc:
            log.warning("cannot report %d unit states, will retry: %s", len(states), exc)
            for s in statuses:
                self._pending.setdefault(s.name, s)
            await asyncio.sleep(RETRY_DELAY)
            self._report_wake.set()
            return
        self._reported.update(s.name for s in states)

    async def _forget_states(self, names: list[str]) -> None:
        for name in names:
            self._pending.pop(name, None)
        with contextlib.suppress(RegistryError):
            await self._registry.delete_unit_states(self._machine_id, names)
            self._reported.difference_update(names)

    async def report_all(self) -> None:
        """Re-report every loaded unit and refusal (after re-registering on a new lease)."""
        self._reported.clear()
        if self._refusals:
            await self._registry.put_refusals(
                self._machine_id, dict(self._refusals), self._lease()
            )
        await self._report_now(sorted(self._manager.loaded_files()))


def _desired(unit: ScheduledUnit) -> DesiredUnit:
    return DesiredUnit(name=unit.name, hash=unit.hash, target=unit.target, contents=unit.contents)
