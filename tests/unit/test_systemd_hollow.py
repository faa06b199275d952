"""HollowUnitManager: units go through activating to active after the start delay."""

from __future__ import annotations

import asyncio

from fleetpy.lab.hollow import _split
from fleetpy.systemd.hollow import HollowUnitManager

UNIT = "[Service]\nExecStart=/bin/true\n"


async def test_start_passes_through_activating_after_the_delay() -> None:
    manager = HollowUnitManager(start_delay=0.05)
    await manager.start()
    changes = manager.changes()
    await manager.write_unit("a.service", UNIT)
    await manager.daemon_reload()
    await manager.start_unit("a.service")
    assert (await manager.statuses(["a.service"]))["a.service"].active_state == "activating"
    seen = [await asyncio.wait_for(anext(changes), 1) for _ in range(2)]
    assert [(s.active_state, s.sub_state) for s in seen] == [
        ("activating", "start"), ("active", "running")]
    assert manager.calls == []  # nothing recorded: hollow machines run for hours
    await manager.close()


async def test_stop_while_activating_never_becomes_active() -> None:
    manager = HollowUnitManager(start_delay=0.05)
    await manager.start()
    await manager.write_unit("a.service", UNIT)
    await manager.start_unit("a.service")
    await manager.stop_unit("a.service")
    await asyncio.sleep(0.1)
    status = (await manager.statuses(["a.service"]))["a.service"]
    assert status.active_state == "inactive"
    await manager.close()


async def test_no_delay_is_active_at_once() -> None:
    manager = HollowUnitManager()
    await manager.start()
    await manager.write_unit("a.service", UNIT)
    await manager.start_unit("a.service")
    assert (await manager.statuses(["a.service"]))["a.service"].active_state == "active"
    await manager.close()


def test_machines_are_split_evenly_over_workers() -> None:
    assert _split(10, 3) == [(0, 4), (4, 3), (7, 3)]
    assert _split(1000, 2) == [(0, 500), (500, 500)]
    assert sum(c for _, c in _split(1003, 7)) == 1003
