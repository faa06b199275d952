"""Test harness for fleetctl: a registry on a background event loop, a fake
engine + agent that act on it, and a bridge so that fleetctl (which runs its
own ``asyncio.run`` per command) can use that registry or the API server.

``Cluster`` owns a thread running an event loop. On it live the registry
(MemoryRegistry by default, or an EtcdRegistry), optionally the gRPC API
server, and the simulation: on every change under ``units/`` it schedules each
unit on a machine and reports a state for it like an agent would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from click.testing import CliRunner, Result

from fleetpy.ctl.common import CtlEnv
from fleetpy.ctl.main import main
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitState
from fleetpy.registry.base import LeaderToken, Lease, Registry
from fleetpy.registry.memory import MemoryRegistry

T = TypeVar("T")

M1 = Machine("4f4a4289a8f24d0ab6d1b6a5e2f6a001", "172.17.8.101")
M2 = Machine("ca541338e1e84b5c9a2a2c9f2d3b4c02", "172.17.8.102", {"region": "us-east"})


class Cluster:
    """A registry and a fake engine/agent on a background loop (see module doc)."""

    def __init__(
        self,
        machines: Sequence[Machine] = (M1,),
        registry: Callable[[], Registry] = MemoryRegistry,
        simulate: bool = True,
        delay: float = 0.02,
    ) -> None:
        self.machines = list(machines)
        self.simulate = simulate
        self.delay = delay
        self.waiting: dict[str, str] = {}  # unit -> reason the fake engine gives
        self.failing: set[str] = set()  # units whose start fails
        self.stuck: set[str] = set()  # units the fake agent never reports
        self.placement: dict[str, str] = {}  # unit -> machine id
        self.paused = False  # the fake engine/agent ignores changes while paused (``pause``)
        self._reconciling = asyncio.Lock()  # held by a reconcile under way
        self._make_registry = registry
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.registry: Registry = self.call(self._setup)
        self.server: Any = None

    # running things on the cluster's loop --------------------------------------

    def run(self, coro: Awaitable[T], timeout: float = 20) -> T:
        async def wrap() -> T:
            return await coro

        fut: Future[T] = asyncio.run_coroutine_threadsafe(wrap(), self.loop)
        return fut.result(timeout)

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 20) -> T:
        return self.run(fn(), timeout)

    async def _setup(self) -> Registry:
        registry = self._make_registry()
        self.lease: Lease = await registry.grant_lease(60)
        for m in self.machines:
            await registry.register_machine(m, self.lease)
        token = await registry.campaign(self.machines[0].id, self.lease)
        assert token is not None
        self.token: LeaderToken = token
        self.registry = registry
        if self.simulate:
            self._sim = asyncio.get_running_loop().create_task(self._simulate())
        return registry

    def close(self) -> None:
        async def teardown() -> None:
            if self.server is not None:
                await self.server.stop(None)
            if self.simulate:
                self._sim.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sim
            await self.registry.close()

        self.call(teardown)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the fake engine + agent ------------------------------------------------------

    async def _simulate(self) -> None:
        async for _ in self.registry.watch("units/"):
            await asyncio.sleep(self.delay)
            await self.reconcile()

    def pause(self) -> None:
        """Stop the fake engine/agent: returns once a reconcile under way has finished."""
        self.paused = True

        async def idle() -> None:
            async with self._reconciling:
                pass

        self.run(idle())

    async def reconcile(self) -> None:
        async with self._reconciling:
            if not self.paused:
                await self._reconcile()

    async def _reconcile(self) -> None:
        reg = self.registry
        units = {r.unit.name: r for r in await reg.list_units()}
        scheduled = {(s.machine_id, s.name) for s in await reg.list_schedule()}
        put: list[ScheduledUnit] = []
        states: list[UnitState] = []
        waiting: dict[str, str | None] = {}
        keep: set[tuple[str, str]] = set()
        for name, rec in units.items():
            if rec.desired is TargetState.INACTIVE:
                continue
            if name in self.waiting:
                waiting[name] = self.waiting[name]
                continue
            waiting[name] = None
            mid = self.placement.get(name, self.machines[0].id)
            keep.add((mid, name))
            put.append(ScheduledUnit(name, mid, rec.desired, rec.unit.hash, rec.unit.contents))
            if name in self.stuck:
                continue
            if rec.desired is TargetState.LOADED:
                active, sub = "inactive", "dead"
            elif name in self.failing:
                active, sub = "failed", "failed"
            else:
                active, sub = "active", "running"
            states.append(UnitState(name, mid, "loaded", active, sub, rec.unit.hash))
        gone = sorted(scheduled - keep)
        await reg.apply_schedule(self.token, put, gone, waiting)
        if states:
            await reg.put_unit_states(states, self.lease)
        for mid, name in gone:
            await reg.delete_unit_states(mid, [name])

    # reading and writing the registry from tests ----------------------------------

    def units(self) -> dict[str, Any]:
        return {r.unit.name: r for r in self.run(self.registry.list_units())}

    def states(self) -> list[UnitState]:
        return self.run(self.registry.list_unit_states())

    def report(self, *states: UnitState) -> None:
        self.run(self.registry.put_unit_states(states, self.lease))

    # fleetctl ----------------------------------------------------------------------

    def env(self) -> CtlEnv:
        return CtlEnv(registry_factory=self._factory)

    async def _factory(self, endpoints: Sequence[str], prefix: str, timeout: float) -> Registry:
        return LoopProxy(self)  # type: ignore[return-value]

    def start_api(self, socket_path: str) -> str:
        from fleetpy.api.server import start_api_server

        address = f"unix://{socket_path}"
        self.server = self.run(start_api_server(self.registry, [address]))
        return address

    def ctl(self, *args: str, api: str | None = None, env: dict[str, str] | None = None) -> Result:
        """Run fleetctl in-process: through ``api`` when given, else --driver etcd."""
        if api is not None:
            argv = ["--endpoint", api, *args]
            return CliRunner().invoke(main, argv, obj=CtlEnv(), env=env)
        argv = ["--driver", "etcd", "--etcd-endpoints", "http://fake:2379", *args]
        return CliRunner().invoke(main, argv, obj=self.env(), env=env)


class LoopProxy:
    """The cluster's registry, usable from another event loop (fleetctl's)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    async def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._cluster.registry, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            fut = asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self._cluster.loop)
            return await asyncio.wrap_future(fut)

        return call

    def watch(self, prefix: str) -> AsyncIterator[Any]:
        return self._generator(self._cluster.registry.watch(prefix))

    def unit_state_pages(self, *args: Any) -> AsyncIterator[Any]:
        return self._generator(self._cluster.registry.unit_state_pages(*args))

    def machine_pages(self, *args: Any) -> AsyncIterator[Any]:
        return self._generator(self._cluster.registry.machine_pages(*args))

    async def _generator(self, agen: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """An async generator of the cluster's loop, iterated from this one."""
        loop = self._cluster.loop
        try:
            while True:
                fut = asyncio.run_coroutine_threadsafe(agen.__anext__(), loop)  # type: ignore[arg-type]
                try:
                    item = await asyncio.wrap_future(fut)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                asyncio.run_coroutine_threadsafe(aclose(), loop)
