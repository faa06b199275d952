"""fleetd keeps metadata changed at runtime: Presence on the in-memory registry."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from fleetpy.agent.presence import Presence
from fleetpy.model.metadata import MetadataChange
from fleetpy.model.types import Machine
from fleetpy.registry.memory import MemoryRegistry

pytestmark = pytest.mark.timeout(10)

CONFIGURED = Machine("4f4a4289" + "0" * 24, "172.17.8.101", {"region": "us-east", "disk": "hdd"})


async def until(check: object, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_runtime_change_is_kept_and_survives_a_restart(tmp_path: Path) -> None:
    store = MemoryRegistry()
    agent, api = store.connect(), store.connect()
    presence = Presence(agent, CONFIGURED, tmp_path)
    assert presence.machine == CONFIGURED
    lease = await agent.grant_lease(30)
    assert await agent.register_machine(presence.machine, lease)
    follow = asyncio.create_task(presence.follow())
    try:
        changed = await api.set_machine_metadata(
            CONFIGURED.id, MetadataChange.make({"disk": "ssd", "role": "db"}, ["region"]))
        assert changed is not None
        await until(lambda: presence.machine == changed)
        assert json.loads((tmp_path / "metadata.json").read_text()) == {
            "removed": ["region"], "set": {"disk": "ssd", "role": "db"}}
        # Registering again (a lost lease) writes the runtime metadata, not the config's.
        await agent.update_machine(presence.machine, lease)
        assert await api.list_machines() == [changed]
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
    # A restarted fleetd (same state dir) starts from the change...
    assert Presence(agent, CONFIGURED, tmp_path).machine == changed
    # ...and a config edited since still counts for keys nobody changed.
    edited = Machine(CONFIGURED.id, CONFIGURED.public_ip, {"disk": "hdd", "az": "b"})
    assert Presence(agent, edited, tmp_path).machine.metadata == {
        "az": "b", "disk": "ssd", "role": "db"}


async def test_back_to_the_configured_metadata_forgets_the_overrides(tmp_path: Path) -> None:
    presence = Presence(MemoryRegistry(), CONFIGURED, tmp_path)
    assert presence.observe(Machine(CONFIGURED.id, CONFIGURED.public_ip, {"role": "x"}))
    assert (tmp_path / "metadata.json").exists()
    assert presence.observe(CONFIGURED)
    assert not (tmp_path / "metadata.json").exists()
    assert not presence.observe(CONFIGURED)


def test_unreadable_overrides_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text("{nope")
    assert Presence(MemoryRegistry(), CONFIGURED, tmp_path).machine == CONFIGURED


@pytest.mark.parametrize("stopping", [True, False])
async def test_a_machine_shutting_down_leaves_at_once(
    stopping: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetpy.agent import presence as module

    monkeypatch.setattr(module, "system_stopping", lambda: stopping)
    registry = MemoryRegistry()
    lease = await registry.grant_lease(30)
    assert await registry.register_machine(CONFIGURED, lease)
    assert await module.leave_if_shutting_down(lease) is stopping
    assert [m.id for m in await registry.list_machines()] == ([] if stopping else [CONFIGURED.id])
