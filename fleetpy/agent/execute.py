"""The agent's executor: run the planner's tasks against systemd, one at a time.

A mixin of fleetpy.agent.agent.Agent (the state it uses is the Agent's, set in
its ``__init__``). One log line per task with the planner's reason; a failed
task is kept as the unit's error and backed off (fleetpy.agent.retry) without
aborting the others; units systemd cannot load are held until they change.
Keeps fleet's record of what it loaded and launched here (fleetpy.agent.record,
persisted in the state directory), and decides which running, unscheduled
units are kept for now (fleetpy.agent.hold). Logs through the agent's logger
(``fleetpy.agent``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fleetpy.agent import hold
from fleetpy.agent.machine_log import MachineLog
from fleetpy.agent.plan import BUSY_STATES, DesiredUnit, Record, Task, TaskKind
from fleetpy.agent.record import RecordFile
from fleetpy.agent.retry import Failures, Key
from fleetpy.agent.settle import Settling
from fleetpy.registry.base import Lease, Registry
from fleetpy.systemd.base import SystemdError, UnitManager, UnitStatus

RETRY_DELAY = 1.0


def desired_key(want: DesiredUnit | None) -> Key:
    """What a failure of a unit is kept against: it is forgotten once this changes."""
    return None if want is None else (want.hash, str(want.target))


class Executing:
    """Execute tasks, keep the record and the back-off of failures (mixed into Agent)."""

    _registry: Registry
    _manager: UnitManager
    _machine_id: str
    _log: MachineLog
    _lease: Callable[[], Lease]
    _record_file: RecordFile
    _record: dict[str, Record]
    _record_saved: dict[str, Record]
    _failures: Failures
    _retry_timer: asyncio.TimerHandle | None
    _settling: Settling
    _said: dict[tuple[str, str], str]
    _kept: dict[str, str]
    _hold_until: float
    _wake: asyncio.Event

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
            self._failures.stuck(name, desired_key(desired.get(name)), why)
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
            retry = self._failed(task, desired_key(desired.get(name)), exc) if name else ""
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
