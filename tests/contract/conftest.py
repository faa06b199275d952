"""Fixtures of the registry contract suite: each test runs on MemoryRegistry and EtcdRegistry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from fleetpy.registry.base import Lease
from fleetpy.registry.etcd import EtcdRegistry
from fleetpy.registry.lease import KeepaliveLease
from fleetpy.registry.memory import MemoryRegistry
from fleetpy.registry.store import KVRegistry
from tests.fixtures.etcd import PROGRESS_INTERVAL, EtcdProcess

BACKENDS = ["memory", pytest.param("etcd", marks=pytest.mark.etcd)]


class Cluster:
    """Registries that share one store (one etcd, or one MemoryKV), like fleetds."""

    def __init__(self, first: KVRegistry, etcd: EtcdProcess | None) -> None:
        self.first = first
        self.etcd = etcd
        self.registries = [first]

    @property
    def kind(self) -> str:
        return "etcd" if self.etcd is not None else "memory"

    def connect(self) -> KVRegistry:
        """Another client (another fleetd) on the same store and prefix."""
        registry: KVRegistry
        if isinstance(self.first, MemoryRegistry):
            registry = self.first.connect()
        else:
            assert self.etcd is not None
            registry = EtcdRegistry(self.etcd.endpoint, self.first.prefix)
        self.registries.append(registry)
        return registry

    async def kill_holder(self, lease: Lease) -> None:
        """Make ``lease`` expire as if its agent had died (no revoke)."""
        if isinstance(self.first, MemoryRegistry):
            self.first.expire_lease(lease)
        else:
            assert isinstance(lease, KeepaliveLease)
            await lease.stop_keepalive()  # etcd expires it after its ttl

    async def down(self) -> None:
        """etcd becomes unreachable (stopped; or the memory store refuses calls)."""
        if isinstance(self.first, MemoryRegistry):
            self.first.set_available(False)
        else:
            assert self.etcd is not None
            await asyncio.to_thread(self.etcd.stop)

    async def up(self) -> None:
        """etcd is back (restarted with its data)."""
        if isinstance(self.first, MemoryRegistry):
            self.first.set_available(True)
        else:
            assert self.etcd is not None
            await asyncio.to_thread(self.etcd.start)

    async def progress(self) -> None:
        """Let etcd send its watch progress notifications."""
        if isinstance(self.first, MemoryRegistry):
            self.first.store.notify_progress()
        else:
            # etcd's own timer sends them; nothing to wait on but its interval.
            await asyncio.sleep(PROGRESS_INTERVAL * 3)

    def compact(self) -> int:
        """Compact the history up to the current revision."""
        if isinstance(self.first, MemoryRegistry):
            return self.first.compact()
        assert self.etcd is not None
        return self.etcd.compact()

    async def close(self) -> None:
        for registry in self.registries:
            await registry.close()


def _cluster(request: pytest.FixtureRequest, etcd: EtcdProcess | None) -> Cluster:
    if request.param == "memory":
        return Cluster(MemoryRegistry("/fleetpy-test/"), None)
    assert etcd is not None
    prefix = request.getfixturevalue("etcd_prefix")
    return Cluster(EtcdRegistry(etcd.endpoint, prefix), etcd)


@pytest.fixture(params=BACKENDS)
def cluster(
    request: pytest.FixtureRequest, event_loop: asyncio.AbstractEventLoop
) -> Iterator[Cluster]:
    """On the shared etcd (with a unique prefix) or in memory."""
    etcd = request.getfixturevalue("etcd_server") if request.param == "etcd" else None
    result = _cluster(request, etcd)
    yield result
    event_loop.run_until_complete(result.close())


@pytest.fixture
def registry(cluster: Cluster) -> KVRegistry:
    return cluster.first


@pytest.fixture(params=BACKENDS)
def own_cluster(
    request: pytest.FixtureRequest, event_loop: asyncio.AbstractEventLoop
) -> Iterator[Cluster]:
    """Like ``cluster``, on an etcd of the test's own (to stop, restart, compact)."""
    etcd = request.getfixturevalue("fresh_etcd") if request.param == "etcd" else None
    result = _cluster(request, etcd)
    yield result
    event_loop.run_until_complete(result.close())
