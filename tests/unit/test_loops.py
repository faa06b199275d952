"""Agent and engine loops together on the in-memory registry and fake systemd.

The same wiring as fleetd: each machine is a fleetpy.node.Node (what fleetd
runs), on the in-memory registry shared as etcd would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetpy.agent.agent import Agent
from fleetpy.engine.engine import Engine
from fleetpy.model.types import Machine, TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.node import Node
from fleetpy.registry.base import Lease, Registry
from fleetpy.registry.memory import MemoryRegistry
from fleetpy.systemd.fake import FakeUnitManager

pytestmark = pytest.mark.timeout(20)

HELLO = """[Unit]
Description=My Service

[Service]
ExecStart=/bin/sh -c "while true; do echo Hello World; sleep 1; done"
"""


@dataclass
class Running:
    node: Node
    manager: FakeUnitManager
    task: asyncio.Task[None]

    @property
    def machine(self) -> Machine:
        return self.node.machine

    @property
    def engine(self) -> Engine:
        return self.node.engine

    @property
    def agent(self) -> Agent:
        return self.node.agent

    @property
    def registry(self) -> Registry:
        return self.node.registry

    @property
    def lease(self) -> Lease:
        return self.node.lease()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The node's run task and every loop it runs."""
        return [self.task, *self.node.tasks]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def start_node(
    store: MemoryRegistry, machine_id: str, ip: str, state_dir: Path | None = None
) -> Running:
    manager = FakeUnitManager()
    await manager.start()
    machine = Machine(id=machine_id, public_ip=ip)
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="fleetpy-node-"))
    node = Node(store.connect(), manager, machine, state_dir=state_dir / machine_id,
                engine_interval=0.5)
    await node.start()
    assert node.registered
    return Running(node, manager, asyncio.create_task(node.run()))


@contextlib.asynccontextmanager
async def make_cluster(
    state_dir: Path | None = None,
) -> AsyncIterator[tuple[MemoryRegistry, list[Running]]]:
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


async def walkthrough(store: MemoryRegistry, nodes: list[Running]) -> None:
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


async def test_an_idle_engine_makes_no_passes() -> None:
    async with make_cluster() as (store, nodes):
        passes: list[float] = []
        for n in nodes:
            n.node.engine.observe_pass = passes.append
        for i in range(20):
            assert await store.create_unit(make_unit_file(f"u{i}.service", HELLO),
                                           TargetState.LAUNCHED)
        await until(lambda: sum(len(n.manager.units) for n in nodes) == 20)
        await until(lambda: len(passes) > 0)
        # Converged: the passes placing the units (and the one after each write) end;
        # awaited as a quiet reconcile interval (0.5 s) rather than a fixed sleep.
        async with asyncio.timeout(10):
            while True:
                settled = len(passes)
                await asyncio.sleep(0.5)
                if len(passes) == settled:
                    break
        # From now on nothing changes, so the engine plans nothing, its own writes'
        # echoes included: over 1.2 s (two intervals and more) not one pass.
        await asyncio.sleep(1.2)
        assert len(passes) == settled
        # A change is planned at once.
        assert await store.set_desired("u3.service", TargetState.LOADED)
        await until(lambda: len(passes) > settled)


async def test_every_agent_log_line_names_its_machine(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.DEBUG, logger="fleetpy.agent"):
        async with make_cluster() as (store, nodes):
            await walkthrough(store, nodes)
    lines = [r.getMessage() for r in caplog.records if r.name == "fleetpy.agent"]
    assert any(" start hello.service: " in line for line in lines)
    ids = {n.machine.id[:8] for n in nodes}
    assert all(line.startswith("machine ") and line.split()[1].rstrip(":") in ids
               for line in lines), [x for x in lines if not x.startswith("machine ")]
