"""A machine that lost its lease and came back: what it keeps, what it stops.

On the in-memory registry, the target machine's connection is cut off
(``MemoryRegistry.partition``) and its lease expired: the engine, on another
machine, unschedules its units. When the connection heals, the target sees
those changes and registers again. Units the engine puts back here (pinned,
Global) must never be stopped; a copy the engine placed elsewhere must be.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from fleetpy.agent.hold import KEEP_LEASE_LOST, kept_after_return
from fleetpy.model.types import TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.base import Lease, UnitRecord
from fleetpy.registry.memory import MemoryRegistry
from tests.unit.test_loops import HELLO, Running, make_cluster, until

pytestmark = pytest.mark.timeout(30)


def rec(name: str, xfleet: str = "", desired: TargetState = TargetState.LAUNCHED) -> UnitRecord:
    text = HELLO + (f"\n[X-Fleet]\n{xfleet}\n" if xfleet else "")
    return UnitRecord(unit=make_unit_file(name, text), desired=desired)


def test_what_is_kept_after_the_machine_is_back() -> None:
    names = ["pinned.service", "global.service", "moved.service", "gone.service",
             "unloaded.service"]
    records = {
        "pinned.service": rec("pinned.service", "MachineID=abc"),
        "global.service": rec("global.service", "Global=true"),
        "moved.service": rec("moved.service"),
        "gone.service": None,
        "unloaded.service": rec("unloaded.service", desired=TargetState.INACTIVE),
    }
    waiting = {"pinned.service": "MachineID=abc: no such machine",
               "unloaded.service": "stale"}
    kept = kept_after_return(names, records, waiting)
    assert set(kept) == {"pinned.service", "global.service"}
    assert "MachineID=abc: no such machine" in kept["pinned.service"]
    assert "Global" in kept["global.service"]
    # read after the watch's view: the engine already put it back here
    again = kept_after_return(["moved.service"], records, {}, {"moved.service"})
    assert list(again) == ["moved.service"] and "scheduled here again" in again["moved.service"]


async def schedule_of(store: MemoryRegistry) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for entry in await store.list_schedule():
        out.setdefault(entry.name, set()).add(entry.machine_id)
    return out


async def test_units_that_come_back_are_never_stopped_moved_copies_are(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetpy.agent")
    async with make_cluster(tmp_path) as (store, nodes):
        leader = await store.get_leader()
        target: Running = next(n for n in nodes if n.machine.id != leader)
        tid = target.machine.id
        units = {
            "pinned.service": f"MachineID={tid}",
            "global.service": "Global=true",
            **{f"free{i}.service": "" for i in range(3)},
        }
        for name, xfleet in units.items():
            text = HELLO + (f"\n[X-Fleet]\n{xfleet}\n" if xfleet else "")
            assert await store.create_unit(make_unit_file(name, text), TargetState.LAUNCHED)
        await until(lambda: {"pinned.service", "global.service"} <= set(target.manager.units))
        before = await schedule_of(store)
        moving = [n for n, where in before.items() if n.startswith("free") and tid in where]
        assert moving, before  # least loaded: one free unit landed on every machine
        await until(lambda: all(target.manager.units[n].active_state == "active"
                                for n in ["pinned.service", "global.service", *moving]
                                if n in target.manager.units))

        target.registry.partition(True)  # type: ignore[attr-defined]
        store.expire_lease(target.lease)
        # the engine unschedules the target's units: pinned waits, free ones move
        async def unscheduled() -> bool:
            now = await schedule_of(store)
            return ("pinned.service" not in now and tid not in now.get("global.service", set())
                    and all(tid not in now.get(n, {tid}) for n in moving))
        async with asyncio.timeout(10):
            while not await unscheduled():
                await asyncio.sleep(0.02)
        calls_before = len(target.manager.calls)
        # registering again waits until the agent has seen its units unscheduled (so
        # the order is the one the lab shows after a pause: the watch first)
        gate = asyncio.Event()
        register = target.node._register

        async def gated() -> Lease:
            await gate.wait()
            return await register()

        target.node._register = gated  # type: ignore[method-assign]
        target.registry.partition(False)  # type: ignore[attr-defined]
        await until(lambda: {"pinned.service", "global.service"}
                    <= set(target.agent._kept), timeout=10)
        assert not [c for c in target.manager.calls[calls_before:] if c[0] == "stop"
                    and c[1] in ("pinned.service", "global.service")]
        gate.set()

        # back: registered on a new lease, pinned and global scheduled here again
        async def back() -> bool:
            now = await schedule_of(store)
            return (target.node.registered and now.get("pinned.service") == {tid}
                    and tid in now.get("global.service", set()))
        async with asyncio.timeout(15):
            while not await back():
                await asyncio.sleep(0.02)
        await until(lambda: all(n not in target.manager.units
                                or target.manager.units[n].active_state != "active"
                                for n in moving), timeout=10)
        after = target.manager.calls[calls_before:]
        stopped = {c[1] for c in after if c[0] == "stop"}
        assert "pinned.service" not in stopped and "global.service" not in stopped, after
        assert set(moving) <= stopped, after  # the stale copies were stopped
        assert target.manager.units["pinned.service"].active_state == "active"
        assert target.manager.units["global.service"].active_state == "active"
    said = [r.getMessage() for r in caplog.records if "keeping" in r.getMessage()]
    assert any(KEEP_LEASE_LOST in line or "since this machine was gone" in line
               for line in said), said
