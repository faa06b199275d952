"""Agent and engine loops together on the in-memory registry and fake systemd.

The same wiring as fleetd (fleetpy.daemon) minus the process: one engine, one
agent per machine, the registry shared as etcd would be.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetpy.agent.agent import Agent
from fleetpy.engine.engine import Engine
from fleetpy.model.types import Machine, TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.base import Lease
from fleetpy.registry.memory import MemoryRegistry
from fleetpy.systemd.fake import FakeUnitManager

pytestmark = pytest.mark.timeout(20)

HELLO = """[Unit]
Description=My Service

[Service]
ExecStart=/bin/sh -c "while true; do echo Hello World; sleep 1; done"
"""


@dataclass
class Node:
    machine: Machine
    registry: MemoryRegistry
    manager: FakeUnitManager
    lease: Lease
    agent: Agent
    engine: Engine
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def start_node(store: MemoryRegistry, machine_id: str, ip: str, state_dir: Path) -> Node:
    registry = store.connect()
    manager = FakeUnitManager()
    await manager.start()
    lease = await registry.grant_lease(30)
    machine = Machine(id=machine_id, public_ip=ip)
    assert await registry.register_machine(machine, lease)
    agent = Agent(registry, manager, machine_id, lambda: lease, state_dir / machine_id)
    engine = Engine(registry, machine_id, lambda: lease, interval=0.5)
    tasks = [asyncio.create_task(agent.run()), asyncio.create_task(engine.run())]
    return Node(machine, registry, manager, lease, agent, engine, tasks)


@contextlib.asynccontextmanager
async def make_cluster(state_dir: Path) -> AsyncIterator[tuple[MemoryRegistry, list[Node]]]:
    store = MemoryRegistry()
    nodes = [await start_node(store, f"{i:032x}", f"10.0.0.{i}", state_dir) for i in (1, 2, 3)]
    try:
        yield store, nodes
    finally:
        for node in nodes:
            await node.stop()


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def state_of(registry: MemoryRegistry, name: str) -> tuple[str, str, str] | None:
    for state in await registry.list_unit_states():
        if state.name == name:
            return state.machine_id, state.active_state, state.sub_state
    return None


async def test_load_start_stop_unload_destroy(tmp_path: Path) -> None:
    async with make_cluster(tmp_path) as (store, nodes):
        await walkthrough(store, nodes)


async def walkthrough(store: MemoryRegistry, nodes: list[Node]) -> None:
    unit = make_unit_file("hello.service", HELLO)
    assert await store.create_unit(unit, TargetState.LOADED)

    async def reported() -> tuple[str, str, str] | None:
        return await state_of(store, "hello.service")

    for _ in range(500):
        if (state := await reported()) is not None:
            break
        await asyncio.sleep(0.01)
    assert state is not None and state[1:] == ("inactive", "dead")
    node = next(n for n in nodes if n.machine.id == state[0])
    assert node.manager.loaded_files() == {"hello.service": unit.hash}
    assert all(not n.manager.loaded_files() for n in nodes if n is not node)

    await store.set_desired("hello.service", TargetState.LAUNCHED)
    await wait_state(store, "hello.service", ("active", "running"))
    await store.set_desired("hello.service", TargetState.LOADED)
    await wait_state(store, "hello.service", ("inactive", "dead"))
    # start after stop: a new start, not a repeat of the failed-start guard
    await store.set_desired("hello.service", TargetState.LAUNCHED)
    await wait_state(store, "hello.service", ("active", "running"))
    await store.set_desired("hello.service", TargetState.LOADED)
    await wait_state(store, "hello.service", ("inactive", "dead"))
    await store.set_desired("hello.service", TargetState.INACTIVE)
    await wait_state(store, "hello.service", None)
    assert node.manager.loaded_files() == {}
    await store.set_desired("hello.service", TargetState.LAUNCHED)
    await wait_state(store, "hello.service", ("active", "running"))
    assert await store.destroy_unit("hello.service")
    await wait_state(store, "hello.service", None)
    assert all(not n.manager.loaded_files() for n in nodes)


async def wait_state(
    store: MemoryRegistry, name: str, want: tuple[str, str] | None, timeout: float = 5.0
) -> None:
    last = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                last = await state_of(store, name)
                if (last[1:] if last else None) == want:
                    return
                await asyncio.sleep(0.01)
    raise AssertionError(f"{name}: wanted {want}, last reported {last}")
