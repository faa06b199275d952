"""MemoryRegistry: the registry on an in-process etcd, for fast tests.

It is the same code as EtcdRegistry (``KVRegistry``) on ``MemoryKV`` instead of
etcd, so revisions, transactions, leader guards, lease-bound keys, watch resets
and resumes behave alike. Several registries can share one store, like several
fleetds share etcd::

    engine = MemoryRegistry()
    agent = engine.connect()          # same store, own leases and watches
    lease = await agent.grant_lease(30)
    agent.expire_lease(lease)         # its machine and states vanish, lease.wait_lost() returns
    agent.set_available(False)        # every call raises RegistryError, watches retry
    agent.partition(True)             # only this registry is cut off (one host partitioned)
    engine.compact()                  # a watcher that was cut off gets a reset

Leases expire on the event loop's clock when not refreshed (the keepalive
refreshes them every ttl/3 as on etcd); ``expire_lease`` expires one at once.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from fleetpy.registry.base import DEFAULT_PREFIX, Lease, RegistryError
from fleetpy.registry.kv import Compare, Op, RangeResult, TxnResult, WatchBatch
from fleetpy.registry.lease import KeepaliveLease
from fleetpy.registry.memory_kv import URL, MemoryKV
from fleetpy.registry.store import DEFAULT_MAX_TXN_OPS, KVRegistry


class MemoryClient:
    """One client of a ``MemoryKV`` (a ``KVBackend``): counts its requests."""

    def __init__(self, store: MemoryKV) -> None:
        self.store = store
        self.requests: collections.Counter[str] = collections.Counter()
        self._closed = False
        self.cut_off = False

    @property
    def description(self) -> str:
        return URL

    def _count(self, what: str) -> None:
        if self._closed:
            raise RegistryError("etcd client is closed")
        if self.cut_off:
            raise RegistryError("etcd unreachable from this client (partitioned)")
        self.requests[what] += 1

    def partition(self, cut_off: bool) -> None:
        """Cut this client off from the store (True) or heal it; the others go on."""
        self.cut_off = cut_off
        if cut_off:
            self.store.break_watches(owner=self, why="partitioned")

    async def range(
        self, key: bytes, range_end: bytes | None = None, *, limit: int = 0, revision: int = 0
    ) -> RangeResult:
        self._count("range")
        return self.store.range(key, range_end, limit=limit, revision=revision)

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self._count("txn")
        return self.store.txn(compare, success, failure)

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        self._count("lease_grant")
        return self.store.lease_grant(ttl)

    async def lease_keepalive(self, lease_id: int) -> int:
        self._count("lease_keepalive")
        return self.store.lease_keepalive(lease_id)

    async def lease_revoke(self, lease_id: int) -> None:
        self._count("lease_revoke")
        self.store.lease_revoke(lease_id)

    async def watch(
        self, key: bytes, range_end: bytes, start_revision: int
    ) -> AsyncGenerator[WatchBatch, None]:
        self._count("watch")
        async with aclosing(self.store.watch(key, range_end, start_revision, self)) as stream:
            async for batch in stream:
                yield batch

    async def close(self) -> None:
        self._closed = True
        self.store.break_watches(owner=self, why="client closed")


class MemoryRegistry(KVRegistry):
    """A ``Registry`` in memory with etcd's semantics (see module docstring)."""

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        *,
        store: MemoryKV | None = None,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
    ) -> None:
        self.store = store if store is not None else MemoryKV()
        self.client = MemoryClient(self.store)
        super().__init__(self.client, prefix, max_txn_ops=max_txn_ops)

    def connect(self) -> MemoryRegistry:
        """Another registry on the same store and prefix (another fleetd)."""
        return MemoryRegistry(self.prefix, store=self.store, max_txn_ops=self.max_txn_ops)

    async def grant_lease(self, ttl: int) -> Lease:
        lease = await super().grant_lease(ttl)
        if isinstance(lease, KeepaliveLease):
            # The keepalive then learns at once (if "etcd" is reachable) that it is gone.
            self.store.on_lease_gone(lease.id, lease.check_now)
        return lease

    async def adopt_lease(self, lease_id: int, ttl: int) -> Lease | None:
        lease = await super().adopt_lease(lease_id, ttl)
        if isinstance(lease, KeepaliveLease):
            self.store.on_lease_gone(lease.id, lease.check_now)
        return lease

    # test hooks -----------------------------------------------------------------

    def expire_lease(self, lease: Lease | int) -> None:
        """Expire a lease now: its keys vanish in one revision, its holder sees it lost."""
        self.store.expire_lease(lease if isinstance(lease, int) else lease.id)

    def partition(self, cut_off: bool) -> None:
        """Cut this registry's connection off (True) or heal it, like one host
        partitioned from etcd: the other registries on the store go on."""
        self.client.partition(cut_off)

    def set_available(self, available: bool) -> None:
        """Simulate an etcd outage (False) and its end (True); shared by the whole store."""
        self.store.set_available(available)

    def compact(self, revision: int | None = None) -> int:
        """Compact the store's history (default: up to the current revision)."""
        return self.store.compact(revision)

    def break_watches(self) -> None:
        """Break every open watch stream (they resume from their last revision)."""
        self.store.break_watches()

    @property
    def revision(self) -> int:
        return self.store.revision

    @property
    def requests(self) -> collections.Counter[str]:
        """Requests this registry made, by kind (range, txn, lease_keepalive, watch...)."""
        return self.client.requests
