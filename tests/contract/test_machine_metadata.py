"""Runtime machine metadata on MemoryRegistry and EtcdRegistry: the record keeps its lease."""

from __future__ import annotations

import asyncio

from fleetpy.model.metadata import MetadataChange
from fleetpy.registry.store import KVRegistry
from tests.contract.conftest import Cluster
from tests.contract.helpers import WAIT, machine

TTL = 2


async def test_set_and_remove_keep_the_agent_lease(cluster: Cluster) -> None:
    agent, api = cluster.first, cluster.connect()
    lease = await agent.grant_lease(TTL)
    assert await agent.register_machine(machine("m1", region="us-east", disk="hdd"), lease)
    change = MetadataChange.make({"disk": "ssd", "role": "db"}, ["region"])
    changed = await api.set_machine_metadata("m1", change)
    assert changed == machine("m1", disk="ssd", role="db")
    assert await api.list_machines() == [changed]
    # Still on the agent's lease: the agent may update it, and it dies with the agent.
    await agent.update_machine(machine("m1", disk="ssd"), lease)
    await cluster.kill_holder(lease)
    async with asyncio.timeout(TTL + WAIT):
        while await api.list_machines():
            await asyncio.sleep(0.1)
    assert await api.set_machine_metadata("m1", change) is None


async def test_unknown_machine_is_none_and_writes_nothing(registry: KVRegistry) -> None:
    assert await registry.set_machine_metadata("nope", MetadataChange.make({"a": "b"}, [])) is None
    assert await registry.list_machines() == []
