"""The engine loop at scale: how long it gathers changes before a pass, how it writes."""

from __future__ import annotations

import asyncio
import contextlib

from fleetpy.engine.engine import COALESCE, MAX_COALESCE, Engine, coalesce_wait
from fleetpy.model.types import Machine, TargetState, UnitFile
from fleetpy.registry.kv import prefix_end
from fleetpy.registry.memory import MemoryRegistry
from fleetpy.systemd.base import content_hash


def test_passes_in_a_row_wait_as_long_as_the_last_one_took() -> None:
    assert coalesce_wait(0.4, 0.0) == 0.4  # planning takes at most half the time
    assert coalesce_wait(5.0, 0.0) == MAX_COALESCE
    assert coalesce_wait(0.0, 0.0) == COALESCE


def test_the_first_change_after_a_quiet_spell_is_planned_at_once() -> None:
    # a machine gone after 30 s of nothing: its units are placed without waiting
    # for the length of the last (costly) pass
    assert coalesce_wait(0.8, 30.0) == COALESCE
    assert coalesce_wait(0.8, 0.5) == 0.8 - 0.5


async def test_a_machine_gets_its_units_of_a_pass_in_one_transaction() -> None:
    """Schedule writes are cut into transactions (here 8 entries, etcd's 128): grouped
    by machine, each agent's new units arrive in one transaction (one watch event,
    one reconcile), not one by one."""
    registry = MemoryRegistry(max_txn_ops=8)
    ids = [f"{c}" * 32 for c in "abcd"]
    for machine_id in ids:
        lease = await registry.grant_lease(30)
        assert await registry.register_machine(Machine(id=machine_id, public_ip="10.0.0.1"),
                                               lease)
    text = "[Service]\nExecStart=/bin/true\n"
    await registry.create_units([UnitFile(f"u{i:02}.service", text, content_hash(text))
                                 for i in range(16)], TargetState.LAUNCHED)
    engine = Engine(registry, "e" * 32, lambda: lease)
    task = asyncio.create_task(engine.run())
    try:
        async with asyncio.timeout(10):
            while len(await registry.list_schedule()) < 16:
                await asyncio.sleep(0.02)
        for machine_id in ids:
            key = f"{registry.prefix}schedule/{machine_id}/".encode()
            kvs = (await registry.backend.range(key, prefix_end(key))).kvs
            assert len(kvs) == 4  # spread evenly...
            assert len({kv.mod_revision for kv in kvs}) == 1  # ...and written at once
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
