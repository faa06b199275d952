"""Builders and waits shared by the contract tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.registry.base import WatchUpdate

WAIT = 5.0  # seconds: the most any single expected event may take


def unit(name: str, contents: str = "[Service]\nExecStart=/bin/sleep 1d\n") -> UnitFile:
    return UnitFile(name=name, contents=contents, hash=f"hash-of-{contents}"[:40])


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
