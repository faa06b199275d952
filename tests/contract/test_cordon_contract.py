"""cordoned/<machine_id> on MemoryRegistry and a real etcd: durable, on no lease."""

from __future__ import annotations

import asyncio

import pytest

from fleetpy.model.cordon import Cordon, MachineState
from fleetpy.model.types import Machine
from fleetpy.registry.store import KVRegistry
from tests.contract.conftest import Cluster

pytestmark = pytest.mark.timeout(30)

M = Machine(id="4f4a4289" + "0" * 24, public_ip="172.17.8.101")


async def test_cordon_outlives_the_machines_lease(cluster: Cluster, registry: KVRegistry) -> None:
    lease = await registry.grant_lease(2)
    assert await registry.register_machine(M, lease)
    drain = Cordon(M.id, MachineState.DRAINING, by="core@host", at="2026-12-01T18:00:00Z",
                   reason="kernel", move=("a.service",), stop=("b.service",), stop_global=True)
    await registry.put_cordon(drain)
    await cluster.kill_holder(lease)
    other = cluster.connect()
    for _ in range(100):  # the machine goes with its lease...
        if not await other.list_machines():
            break
        await asyncio.sleep(0.1)
    assert await other.list_machines() == []
    assert await other.list_cordons() == {M.id: drain}  # ...its cordon stays
    assert await other.delete_cordon(M.id) is True
    assert await other.delete_cordon(M.id) is False
    assert await registry.list_cordons() == {}


async def test_unreadable_cordon_is_skipped(registry: KVRegistry) -> None:
    await registry.put_cordon(Cordon(M.id))
    from fleetpy.registry.kv import Put

    await registry.backend.txn(
        [], [Put((registry.prefix + "cordoned/bad").encode(), b'{"state": "ready"}')])
    assert list(await registry.list_cordons()) == [M.id]
    assert "cordoned/bad" in {u.key[len(registry.prefix):]
                              for u in await registry.list_unreadable()}
