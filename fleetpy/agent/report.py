"""The agent's reporting: what systemd says of this machine's units, into ``states/``.

A mixin of fleetpy.agent.agent.Agent (the state it uses is the Agent's, set in
its ``__init__``): following systemd's changes, the settling of starts
(fleetpy.agent.settle: ``starting`` until a start settled, then ``launched``),
and writing unit states in few transactions (fleetpy.agent.pace), each state
only when it differs from the one last written. Logs through the agent's
logger (``fleetpy.agent``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fleetpy.agent.execute import RETRY_DELAY
from fleetpy.agent.machine_log import MachineLog
from fleetpy.agent.pace import ReportPace
from fleetpy.agent.plan import BUSY_STATES, CurrentUnit, DesiredUnit, Record, start_due
from fleetpy.agent.refusals import Refusals
from fleetpy.agent.retry import Failures
from fleetpy.agent.settle import Settling
from fleetpy.model.types import UnitState
from fleetpy.registry.base import Lease, Registry, RegistryError
from fleetpy.systemd.base import SystemdError, UnitManager, UnitStatus


class Reporting:
    """Settle starts, follow systemd and report unit states (mixed into Agent)."""

    _registry: Registry
    _manager: UnitManager
    _machine_id: str
    _log: MachineLog
    _lease: Callable[[], Lease]
    _desired: dict[str, DesiredUnit]
    _record: dict[str, Record]
    _failures: Failures
    _settling: Settling
    _wake: asyncio.Event
    _report_wake: asyncio.Event
    _pending: dict[str, UnitStatus]
    _written: dict[str, UnitState]
    _refusals: Refusals

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
