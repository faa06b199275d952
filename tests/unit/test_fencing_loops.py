"""StopWhenDisconnected with the agent and engine loops: nodes on the in-memory registry.

One machine is cut off the store (``MemoryRegistry.partition``, a
partition of that machine alone) while an observer samples every machine's
fake systemd: a fenced unit never runs on two machines at once and runs
elsewhere after the move; an unfenced one keeps running on the cut-off
machine and its stale copy is stopped once the machine is back. A short
disconnection stops the fenced unit and starts it again in place.
These are fast checks of the loops; tests/lab/test_fencing.py is the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fleetpy.model.types import Machine, ScheduledUnit, TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.node import Node
from fleetpy.registry.memory import MemoryRegistry
from fleetpy.systemd.fake import FakeUnitManager

pytestmark = pytest.mark.timeout(40)

BODY = "[Service]\nExecStart=/bin/sleep infinity\n"
STOP_TAKES = 1.5  # seconds a stop takes on the first machine (TimeoutStopSec, ExecStop=)
RUNNING = ("active", "activating", "reloading", "deactivating")


class SlowStop(FakeUnitManager):
    """systemd whose stops take STOP_TAKES: the unit is deactivating meanwhile (still running)."""

    async def stop_unit(self, name: str) -> None:
        status = self.units.get(name)
        if status is None or status.active_state != "active":
            await super().stop_unit(name)
            return
        await self._systemd("stop", name)
        self._set(name, status.load_state, "deactivating", "stop-sigterm")
        asyncio.get_running_loop().call_later(
            STOP_TAKES, self._set, name, status.load_state, "inactive", "dead")
FENCED = BODY + "[X-Fleet]\nStopWhenDisconnected=true\n"


class Cluster:
    def __init__(self, store: MemoryRegistry) -> None:
        self.store = store
        self.nodes: list[Node] = []
        self.managers: list[FakeUnitManager] = []
        self.registries: list[MemoryRegistry] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.samples: list[dict[str, set[int]]] = []  # unit -> indexes of nodes running it

    async def add(self, i: int, ttl: int, state_dir: Path) -> None:
        manager = SlowStop() if not self.nodes else FakeUnitManager()
        await manager.start()
        registry = self.store.connect()
        node = Node(registry, manager, Machine(id=str(i) * 32, public_ip=f"10.0.0.{i}"),
                    state_dir=state_dir / str(i), agent_ttl=ttl, engine_interval=0.5)
        await node.start()
        self.nodes.append(node)
        self.managers.append(manager)
        self.registries.append(registry)
        self.tasks.append(asyncio.create_task(node.run()))

    def running(self, unit: str) -> set[int]:
        return {i for i, m in enumerate(self.managers)
                if (s := m.units.get(unit)) is not None and s.active_state in RUNNING}

    async def observe(self) -> None:
        while True:
            self.samples.append({u: self.running(u) for u in ("f.service", "u.service")})
            await asyncio.sleep(0.005)

    async def until(self, check: Callable[[], object], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, ttl: int) -> AsyncIterator[Cluster]:
    """Node 0 alone gets both units; then nodes 1 and 2 join."""
    c = Cluster(MemoryRegistry())
    await c.add(1, ttl, tmp_path)
    assert await c.store.create_unit(make_unit_file("f.service", FENCED), TargetState.LAUNCHED)
    assert await c.store.create_unit(make_unit_file("u.service", BODY), TargetState.LAUNCHED)
    await c.until(lambda: c.running("f.service") == {0} and c.running("u.service") == {0})
    await c.add(2, ttl, tmp_path)
    await c.add(3, ttl, tmp_path)
    observer = asyncio.create_task(c.observe())
    try:
        yield c
    finally:
        observer.cancel()
        for task in c.tasks:
            task.cancel()
        await asyncio.gather(observer, *c.tasks, return_exceptions=True)


async def test_partition_longer_than_ttl_moves_the_fenced_unit_without_overlap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ttl = 3
    with caplog.at_level(logging.INFO):
        async with cluster(tmp_path, ttl) as c:
            loop = asyncio.get_running_loop()
            cut_at = loop.time()
            c.registries[0].partition(True)
            await c.until(lambda: c.running("f.service") - {0})  # moved and started elsewhere
            moved_after = loop.time() - cut_at
            await c.until(lambda: c.running("u.service") - {0})
            # the unfenced unit kept running on the cut-off machine all along
            assert all(0 in s["u.service"] for s in c.samples), "u.service stopped on node 0"
            assert 0 not in c.running("f.service")
            c.registries[0].partition(False)
            # back: the stale copy of the unfenced unit is stopped; f is not started there
            await c.until(lambda: 0 not in c.running("u.service"))
            await c.until(lambda: c.nodes[0].registered and not c.nodes[0].agent.fencing.cut)
            await asyncio.sleep(0.5)
            assert len(c.running("f.service")) == 1 and 0 not in c.running("f.service")
    overlap = [s for s in c.samples if len(s["f.service"]) > 1]
    assert not overlap, f"f.service ran on two machines at once: {overlap[:3]}"
    # the last renewal was at most ttl/3 before the cut: never placed elsewhere before
    # the lease's expiry (ttl after that renewal) + the margin (ttl/3)
    assert moved_after >= ttl - 0.05, moved_after
    said = [r.getMessage() for r in caplog.records]
    assert any("stopping the units with StopWhenDisconnected" in m and "f.service" in m
               for m in said)
    assert any(m.startswith("machine 11111111") and "stop f.service" in m
               and "lease" in m for m in said), said
    assert not any("stop u.service" in m and "StopWhenDisconnected" in m for m in said)


async def test_a_short_disconnection_stops_the_fenced_unit_and_starts_it_again_in_place(
    tmp_path: Path,
) -> None:
    ttl = 6  # stop at 4 s without renewal; the lease lasts 6 s
    async with cluster(tmp_path, ttl) as c:
        c.registries[0].partition(True)
        stopping = c.managers[0].units
        await c.until(lambda: stopping["f.service"].active_state == "deactivating")
        fencing = c.nodes[0].agent.fencing
        assert fencing is not None and fencing.cut
        c.registries[0].partition(False)  # before the lease ran out, while f is stopping
        await c.until(lambda: not fencing.cut)
        starts = len([call for call in c.managers[0].calls if call == ("start", "f.service")])
        # started again once its stop finished (nothing else wakes the agent meanwhile)
        await c.until(lambda: c.running("f.service") == {0}
                      and stopping["f.service"].active_state == "active", timeout=STOP_TAKES + 2)
        assert [call for call in c.managers[0].calls if call == ("start", "f.service")][starts:]
        assert c.nodes[0].registered
        await asyncio.sleep(0.5)
        assert c.running("f.service") == {0} and c.running("u.service") == {0}
    assert all(s["f.service"] <= {0} for s in c.samples)  # never anywhere else
    assert all(s["u.service"] == {0} for s in c.samples)  # never stopped


async def test_a_new_engine_counts_the_margin_from_its_own_first_view(tmp_path: Path) -> None:
    """The machine went before this engine led: it waits the margin from its first read."""
    store = MemoryRegistry()
    assert await store.create_unit(make_unit_file("f.service", FENCED), TargetState.LAUNCHED)
    old = await store.grant_lease(30)
    token = await store.campaign("old-engine", old)
    assert token is not None
    dead = "d" * 32  # a machine that is gone: schedule entry, no machines/ record
    unit = await store.get_unit("f.service")
    assert unit is not None
    await store.apply_schedule(token, [ScheduledUnit("f.service", dead, TargetState.LAUNCHED,
                                                     unit.unit.hash, unit.unit.contents)], [])
    await old.revoke()  # the old engine is gone too
    ttl = 3  # margin 1 s
    c = Cluster(store)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await c.add(1, ttl, tmp_path)
    try:
        await c.until(lambda: c.running("f.service") == {0})
        waited = loop.time() - started
        assert waited >= ttl / 3, waited
        assert c.nodes[0].engine.leading
    finally:
        for task in c.tasks:
            task.cancel()
        await asyncio.gather(*c.tasks, return_exceptions=True)
