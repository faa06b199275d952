"""Builders and waits shared by the contract tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.model.unitfile import unit_hash
from fleetpy.registry.base import Event, RegistryError, WatchUpdate

T = TypeVar("T")

WAIT = 5.0  # seconds: the most any single expected event may take


def unit(name: str, contents: str = "[Service]\nExecStart=/bin/sleep 1d\n") -> UnitFile:
    return UnitFile(name=name, contents=contents, hash=unit_hash(contents))


def machine(machine_id: str, ip: str = "10.0.0.1", **metadata: str) -> Machine:
    return Machine(id=machine_id, public_ip=ip, metadata=metadata)


def state(name: str, machine_id: str, active: str = "active") -> UnitState:
    return UnitState(name, machine_id, "loaded", active, "running", "h1")


def scheduled(
    name: str, machine_id: str, target: TargetState = TargetState.LAUNCHED
) -> ScheduledUnit:
    return ScheduledUnit(name, machine_id, target, "h1", f"[Service]\n# {name}\n")


async def next_update(watch: AsyncIterator[WatchUpdate], timeout: float = WAIT) -> WatchUpdate:
    async with asyncio.timeout(timeout):
        return await anext(watch)


async def events_until(
    watch: AsyncIterator[WatchUpdate], count: int, timeout: float = WAIT
) -> list[WatchUpdate]:
    """Updates until ``count`` events have arrived (resets are kept, with no events)."""
    updates: list[WatchUpdate] = []
    async with asyncio.timeout(timeout):
        while sum(len(u.events) for u in updates) < count:
            updates.append(await anext(watch))
    return updates


async def until_ok(call: Callable[[], Awaitable[T]], timeout: float = WAIT) -> T:
    """Retry ``call`` while it raises RegistryError: a client waiting for etcd to be back."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await call()
            except RegistryError:
                await asyncio.sleep(0.05)


class Collector:
    """Consumes a watch in a task, keeping every update."""

    def __init__(self, watch: AsyncGenerator[WatchUpdate, None]) -> None:
        self.watch = watch
        self.updates: list[WatchUpdate] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for update in self.watch:
            self.updates.append(update)
            self._changed.set()

    @property
    def events(self) -> list[Event]:
        return [e for u in self.updates for e in u.events]

    async def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def wait_updates(self, count: int, timeout: float = WAIT) -> list[WatchUpdate]:
        await self._wait(lambda: len(self.updates) >= count, timeout)
        return self.updates

    async def wait_events(self, count: int, timeout: float = WAIT) -> list[Event]:
        await self._wait(lambda: len(self.events) >= count, timeout)
        return self.events

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.watch.aclose()
