"""The engine's move of a gone machine's fenced units lands only while that machine is gone.

Run on MemoryRegistry and on EtcdRegistry (real etcd): ``apply_schedule(...,
absent=[machine])`` compares ``machines/<id>`` as absent in the same
transaction, so a machine that registered again keeps its units even if the
engine planned on a view from before (docs/reliability.md).
"""

from __future__ import annotations

import pytest

from fleetpy.registry.base import MachineBackError, NotLeaderError
from fleetpy.registry.store import KVRegistry
from tests.contract.helpers import machine, scheduled

TTL = 2


async def test_a_move_off_a_gone_machine_is_refused_once_it_is_back(registry: KVRegistry) -> None:
    lease = await registry.grant_lease(TTL)
    token = await registry.campaign("m1", lease)
    assert token is not None
    f = scheduled("f.service", "m2")
    await registry.apply_schedule(token, [f], [])
    back = await registry.grant_lease(TTL)
    assert await registry.register_machine(machine("m2"), back)  # m2 registered again
    with pytest.raises(MachineBackError, match="m2"):
        await registry.apply_schedule(token, [scheduled("f.service", "m3")],
                                      [("m2", "f.service")], absent=["m2"])
    assert await registry.list_schedule() == [f]  # nothing of it landed
    await back.revoke()  # m2 gone: the same move lands
    moved = scheduled("f.service", "m3")
    await registry.apply_schedule(token, [moved], [("m2", "f.service")], absent=["m2"])
    assert await registry.list_schedule() == [moved]


async def test_a_refused_write_of_a_deposed_leader_is_still_not_leader(
    registry: KVRegistry,
) -> None:
    lease = await registry.grant_lease(TTL)
    token = await registry.campaign("m1", lease)
    assert token is not None
    await registry.resign(token)
    with pytest.raises(NotLeaderError):
        await registry.apply_schedule(token, [scheduled("f.service", "m3")], [], absent=["m2"])
