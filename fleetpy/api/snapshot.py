"""A consistent-enough view of some units: what fleetctl shows and waits on.

Shared by the API server (WatchUnitStates) and fleetctl's etcd driver, so that
both drivers block on exactly the same data. No gRPC here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fleetpy.model.types import Machine, ScheduledUnit, UnitState
from fleetpy.registry.base import Registry, UnitRecord, WatchUpdate

# Above this many names a full listing is cheaper than one GET per name.
_MAX_GETS = 16


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Units (by name), their schedule entries and reported states, the engine's
    reasons for units it cannot place, and every live machine (by id)."""

    units: Mapping[str, UnitRecord] = field(default_factory=dict)
    schedule: Sequence[ScheduledUnit] = ()
    states: Sequence[UnitState] = ()
    waiting: Mapping[str, str] = field(default_factory=dict)
    machines: Mapping[str, Machine] = field(default_factory=dict)


class SnapshotSource(Protocol):
    """The read side of the registry (a Registry or a fleetctl client)."""

    async def get_unit(self, name: str) -> UnitRecord | None: ...

    async def list_units(self) -> list[UnitRecord]: ...

    async def list_schedule(self, machine_id: str | None = None) -> list[ScheduledUnit]: ...

    async def list_unit_states(self, machine_id: str | None = None) -> list[UnitState]: ...

    async def list_waiting(self) -> dict[str, str]: ...

    async def list_machines(self) -> list[Machine]: ...


async def _read_units(source: SnapshotSource, names: Collection[str] | None) -> list[UnitRecord]:
    if names is not None and len(names) <= _MAX_GETS:
        found = await asyncio.gather(*(source.get_unit(n) for n in names))
        return [r for r in found if r is not None]
    return await source.list_units()


async def read_snapshot(source: SnapshotSource, names: Collection[str] | None = None) -> Snapshot:
    """Read everything about ``names`` (every unit when None) in parallel."""
    units, schedule, states, waiting, machines = await asyncio.gather(
        _read_units(source, names),
        source.list_schedule(),
        source.list_unit_states(),
        source.list_waiting(),
        source.list_machines(),
    )
    wanted = set(names) if names is not None else None

    def keep(name: str) -> bool:
        return wanted is None or name in wanted

    return Snapshot(
        units={r.unit.name: r for r in units if keep(r.unit.name)},
        schedule=tuple(
            dataclasses.replace(s, contents="") for s in sorted(
                schedule, key=lambda s: (s.name, s.machine_id)) if keep(s.name)
        ),
        states=tuple(
            s for s in sorted(states, key=lambda s: (s.name, s.machine_id)) if keep(s.name)
        ),
        waiting={n: r for n, r in waiting.items() if keep(n)},
        machines={m.id: m for m in machines},
    )


def _touches(update: WatchUpdate, names: Collection[str] | None) -> bool:
    """Whether a change can alter the snapshot of ``names`` (keys end in the unit name)."""
    if names is None:
        return True
    for event in update.events:
        if event.key.startswith("machines/") or event.key.rsplit("/", 1)[-1] in names:
            return True
    return False


async def watch_snapshots(
    registry: Registry, names: Collection[str] | None = None
) -> AsyncGenerator[Snapshot, None]:
    """Yield a snapshot now, then a new one whenever the registry changes it.

    One watch on the whole registry prefix wakes us; unchanged snapshots are
    not repeated. Changes to other units do not cause a re-read, and the
    changes that arrive while a snapshot is read cause one re-read, not one
    each (10,000 units destroyed at once are thousands of watch events).
    """
    wanted = None if names is None else frozenset(names)
    changed = asyncio.Event()
    failed: list[BaseException] = []

    async def follow() -> None:
        updates = registry.watch("")
        try:
            async for update in updates:
                if update.reset or _touches(update, wanted):
                    changed.set()
        except Exception as exc:  # handed to the reader below
            failed.append(exc)
            changed.set()
        finally:
            aclose = getattr(updates, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    follower = asyncio.create_task(follow())
    last: Snapshot | None = None
    try:
        while True:
            await changed.wait()
            changed.clear()
            if failed:
                raise failed[0]
            snap = await read_snapshot(registry, names)
            if snap != last:
                last = snap
                yield snap
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower
