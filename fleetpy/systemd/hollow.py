"""HollowUnitManager: the in-memory systemd of a hollow machine (kubemark's hollow kubelet).

A hollow machine runs the real agent against this manager instead of D-Bus.
It is FakeUnitManager (same contract, same files-then-daemon-reload model)
with two differences that matter at scale and for realism:

- a start goes through ``activating/start`` and becomes ``active/running``
  after ``start_delay`` seconds (0: at once), each step published on the
  change stream as systemd's PropertiesChanged signals would be, so the agent
  reports them exactly as fleetd does;
- no call log is kept (a hollow machine runs for hours).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fleetpy.systemd.base import SystemdError
from fleetpy.systemd.fake import FakeUnitManager


class _NoLog(list[Any]):
    """A call log that keeps nothing."""

    def append(self, item: Any) -> None:
        return None


class HollowUnitManager(FakeUnitManager):
    def __init__(self, start_delay: float = 0.0) -> None:
        super().__init__(forget_stopped=True)
        self.start_delay = start_delay
        self.calls = _NoLog()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    async def start_unit(self, name: str) -> None:
        await self._systemd("start", name)
        if self._lookup(name).load_state != "loaded":
            raise SystemdError(f"Unit {name} not found.")
        if self.start_delay <= 0:
            self._set(name, "loaded", "active", "running")
            return
        if self._lookup(name).active_state in ("active", "activating"):
            return  # systemd: starting a started unit is a no-op
        self._set(name, "loaded", "activating", "start")
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(self.start_delay, self._started, name)

    def _started(self, name: str) -> None:
        self._timers.pop(name, None)
        status = self.units.get(name)
        if status is not None and status.active_state == "activating":
            self._set(name, status.load_state, "active", "running")

    async def stop_unit(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        await super().stop_unit(name)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await super().close()
