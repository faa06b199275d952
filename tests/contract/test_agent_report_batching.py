"""The agent's state reports, batched, on a real etcd (issue 13: 10,000 units at once).

A start goes through activating -> active -> launched (settled) within a few
hundred milliseconds; the agent reports the start at once, then what it reached
REPORT_GAP later in one transaction, not one per step; on a machine that wrote
within REPORT_BUSY, a start is one write.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from fleetpy.agent.pace import REPORT_BUSY, REPORT_GAP
from fleetpy.agent.settle import SETTLE_S
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitState
from fleetpy.node import Node
from fleetpy.registry.base import LeaderToken, Lease
from fleetpy.registry.etcd import EtcdRegistry
from fleetpy.systemd.base import content_hash
from fleetpy.systemd.hollow import HollowUnitManager
from tests.fixtures.etcd import EtcdProcess

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(30)]

MACHINE = Machine(id="5c0a1e13" + "0" * 24, public_ip="10.0.0.13")
TEXT = "[Unit]\nDescription=batch\n\n[Service]\nExecStart=/bin/sleep infinity\n"
UNITS = [f"batch@{i}.service" for i in range(10)]


async def start(leader: EtcdRegistry, token: LeaderToken, names: list[str]) -> None:
    """Schedule NAMES here in one write; return once all report active and launched."""
    await leader.apply_schedule(token, [
        ScheduledUnit(name=n, machine_id=MACHINE.id, target=TargetState.LAUNCHED,
                      hash=content_hash(TEXT), contents=TEXT) for n in names], [])
    async with asyncio.timeout(10):
        while True:
            states = {s.name: s for s in await leader.list_unit_states(MACHINE.id)}
            if all(n in states and states[n].active_state == "active"
                   and states[n].fleet == "launched" for n in names):
                return
            await asyncio.sleep(0.05)


async def test_starts_are_reported_in_few_state_transactions(
    etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    assert REPORT_BUSY > 2 * REPORT_GAP > 2 * SETTLE_S  # a start settles before its report
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    leader = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    manager = HollowUnitManager(start_delay=0.1)  # activating, active 0.1 s later
    await manager.start()
    node = Node(registry, manager, MACHINE, state_dir=tmp_path, engine=False)
    writes: list[list[UnitState]] = []
    put = registry.put_unit_states

    async def counted(states: list[UnitState], lease: Lease) -> None:
        writes.append(list(states))
        await put(states, lease)

    registry.put_unit_states = counted  # type: ignore[method-assign]
    task = None
    try:
        await node.start()
        task = asyncio.create_task(node.run())
        token = await leader.campaign("f" * 32, await leader.grant_lease(10))
        assert token is not None
        txns_before = registry.client.requests["txn"]
        await start(leader, token, UNITS)
        await asyncio.sleep(2 * REPORT_GAP)  # nothing more is written afterwards
        # Without the gap: activating, then active, then launched: three writes of ten
        # states. With it: the start (starting, activating), then active and launched.
        said = [[(s.name, s.active_state, s.fleet) for s in w] for w in writes]
        assert len(writes) == 2, said
        assert [s.fleet for s in writes[1]] == ["launched"] * len(UNITS), said
        assert sorted(s.name for s in writes[0]) == UNITS
        # and the agent's etcd client sent just those transactions (no other writes)
        assert registry.client.requests["txn"] - txns_before == 2
        # Busy (it wrote within REPORT_BUSY): the next start is one write, launched.
        writes.clear()
        more = [f"more@{i}.service" for i in range(10)]
        await start(leader, token, more)
        await asyncio.sleep(2 * REPORT_GAP)
        said = [[(s.name, s.active_state, s.fleet) for s in w] for w in writes]
        assert len(writes) == 1, said
        assert sorted(s.name for s in writes[0]) == sorted(more), said
        assert all(s.active_state == "active" and s.fleet == "launched"
                   for s in writes[0]), said
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await node.leave()
        await registry.close()
        await leader.close()
        await manager.close()
