"""cordoned/<machine_id> on MemoryRegistry and a real etcd: durable, on no lease."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from fleetpy.model.cordon import Cordon, MachineState
from fleetpy.model.types import Machine, UnitState
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


async def test_update_cordon_writes_only_over_the_record_it_read(
    cluster: Cluster, registry: KVRegistry
) -> None:
    cordon = Cordon(M.id, by="core@host", reason="kernel")
    assert await registry.update_cordon(cordon, None) is True  # created: there was none
    assert await registry.update_cordon(cordon, None) is False  # there is one now
    drain = replace(cordon, state=MachineState.DRAINING, max_parallel=2, deadline=1.8e9)
    assert await registry.update_cordon(drain, cordon) is True
    other = cluster.connect()
    step = replace(drain, move=("a.service",))
    assert await other.update_cordon(step, cordon) is False  # it read an older record
    assert await other.list_cordons() == {M.id: drain}
    assert await other.update_cordon(step, drain) is True
    assert await registry.delete_cordon(M.id)  # uncordoned meanwhile: never written again
    assert await other.update_cordon(replace(step, move=("a.service", "b.service")),
                                     step) is False
    assert await other.list_cordons() == {}


async def test_update_cordon_with_a_leader_token_needs_the_lead(
    cluster: Cluster, registry: KVRegistry
) -> None:
    lease = await registry.grant_lease(10)
    token = await registry.campaign(M.id, lease)
    assert token is not None
    drain = Cordon(M.id, MachineState.DRAINING)
    await registry.put_cordon(drain)
    step = replace(drain, move=("a.service",))
    assert await registry.update_cordon(step, drain, token) is True
    await registry.resign(token)
    deposed = replace(step, move=("a.service", "b.service"))
    assert await registry.update_cordon(deposed, step, token) is False
    assert await registry.list_cordons() == {M.id: step}


async def test_get_unit_states_reads_the_given_keys_only(registry: KVRegistry) -> None:
    lease = await registry.grant_lease(10)
    other = "5e2b1c7d" + "1" * 24
    states = [UnitState(f"u{i}.service", mid, "loaded", "active", "running", "h")
              for i in range(3) for mid in (M.id, other)]
    await registry.put_unit_states(states, lease)
    want = [(other, "u1.service"), (M.id, "u2.service"), (M.id, "missing.service")]
    got = await registry.get_unit_states(want)
    assert sorted((s.machine_id, s.name) for s in got) == sorted(want[:2])
    assert await registry.get_unit_states([]) == []
