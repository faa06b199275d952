"""An in-process etcd: the ``KVBackend`` behind MemoryRegistry.

Same semantics as etcd v3 where fleetpy relies on them: one store revision
bumped once per writing transaction; create/mod revisions and versions; a
compare on the value of a missing key fails; leases that expire after their
ttl unless refreshed (on the event loop's clock) and delete their keys in one
revision; watches from a past revision replay history, and report compaction
when that revision is gone. Test hooks: :meth:`MemoryKV.set_available` (a
simulated outage: every call raises RegistryError, watch streams break),
:meth:`MemoryKV.expire_lease`, :meth:`MemoryKV.compact`,
:meth:`MemoryKV.break_watches`, :meth:`MemoryKV.notify_progress`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

from fleetpy.registry.base import LeaseLostError, RegistryError
from fleetpy.registry.endpoints import unreachable_message
from fleetpy.registry.kv import (
    Compare,
    Delete,
    EventType,
    Get,
    KeyValue,
    KVEvent,
    Op,
    OpResult,
    Put,
    RangeResult,
    Target,
    TxnResult,
    WatchBatch,
)

log = logging.getLogger(__name__)

URL = "memory://"


def _in_range(key: bytes, start: bytes, end: bytes | None) -> bool:
    if end is None:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


@dataclass
class _Lease:
    ttl: int
    keys: set[bytes] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Subscriber:
    start: bytes
    end: bytes
    owner: object
    # events, a breaking error, or a progress notification (a revision)
    queue: asyncio.Queue[list[KVEvent] | RegistryError | int] = field(default_factory=asyncio.Queue)


class MemoryKV:
    """The store; several clients (registries) may share one, like fleetds share etcd."""

    def __init__(self) -> None:
        self.revision = 1
        self.compacted = 0
        """Watches must start at this revision or later (0: nothing compacted)."""
        self.available = True
        self._data: dict[bytes, KeyValue] = {}
        self._history: list[tuple[int, list[KVEvent]]] = []
        self._leases: dict[int, _Lease] = {}
        self._next_lease = 0x7E57_0000
        self._subscribers: set[_Subscriber] = set()
        self._lease_listeners: dict[int, list[Callable[[], None]]] = {}

    # test hooks --------------------------------------------------------------

    def set_available(self, available: bool) -> None:
        """Simulate losing (False) or regaining (True) the connection to etcd."""
        if self.available and not available:
            self.break_watches(why="connection refused (simulated outage)")
        self.available = available
        log.info("memory etcd %s", "available" if available else "unavailable")

    def break_watches(self, owner: object = None, why: str = "stream reset") -> None:
        """Break open watch streams (all, or one owner's), as an etcd restart would."""
        for sub in list(self._subscribers):
            if owner is None or sub.owner is owner:
                sub.queue.put_nowait(RegistryError(f"watch stream from {URL} broke: {why}"))
                self._subscribers.discard(sub)

    def notify_progress(self) -> None:
        """Send every open watch a progress notification (etcd: every 10 min)."""
        for sub in self._subscribers:
            sub.queue.put_nowait(self.revision)

    def expire_lease(self, lease_id: int) -> None:
        """Expire a lease now, as if its holder had stopped refreshing it."""
        self._drop_lease(lease_id, "expired (test)")

    def compact(self, revision: int | None = None) -> int:
        """Forget history before ``revision`` (default: the current one)."""
        revision = self.revision if revision is None else revision
        if revision > self.revision:
            raise ValueError(f"cannot compact to future revision {revision}")
        self.compacted = max(self.compacted, revision)
        self._history = [h for h in self._history if h[0] >= self.compacted]
        return self.compacted

    def on_lease_gone(self, lease_id: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the lease expires or is revoked."""
        self._lease_listeners.setdefault(lease_id, []).append(callback)

    def dump(self) -> dict[bytes, bytes]:
        """Every key and value (for assertions)."""
        return {k: kv.value for k, kv in sorted(self._data.items())}

    # KVBackend operations ------------------------------------------------------

    def check(self) -> None:
        if not self.available:
            raise RegistryError(unreachable_message([(URL, "connection refused")]))

    def range(
        self, key: bytes, range_end: bytes | None = None, *, limit: int = 0, revision: int = 0
    ) -> RangeResult:
        self.check()
        if revision and revision < self.revision:
            kvs = self._select_at(key, range_end, revision)
        else:
            kvs = self._select(key, range_end)
        if limit and len(kvs) > limit:
            return RangeResult(self.revision, kvs[:limit], more=True)
        return RangeResult(self.revision, kvs)

    def _select_at(self, key: bytes, range_end: bytes | None, revision: int) -> list[KeyValue]:
        """The range as it was at ``revision``: the current entries with the changes
        since undone, from the history (etcd keeps old versions; this store keeps
        the events since the last compaction)."""
        if revision < self.compacted:
            raise RegistryError(
                f"{URL}: required revision {revision} has been compacted ({self.compacted})")
        then: dict[bytes, KeyValue | None] = {}  # last change at or before (None: deleted)
        first_after: dict[bytes, tuple[int, KVEvent]] = {}  # first change after
        for rev, events in self._history:
            for event in events:
                k = event.kv.key
                if not _in_range(k, key, range_end):
                    continue
                if rev <= revision:
                    then[k] = event.kv if event.type is EventType.PUT else None
                else:
                    first_after.setdefault(k, (rev, event))
        found = {k: kv for k, kv in self._data.items()
                 if _in_range(k, key, range_end) and k not in first_after}
        for k, (rev, event) in first_after.items():
            if k in then:
                old = then[k]
                if old is not None:
                    found[k] = old
            elif not (event.type is EventType.PUT and event.kv.create_revision == rev):
                # it existed at ``revision``, changed later, and its value then is compacted
                raise RegistryError(f"{URL}: required revision {revision} has been compacted "
                                    f"({self.compacted})")
        return [found[k] for k in sorted(found)]

    def _select(self, key: bytes, range_end: bytes | None) -> list[KeyValue]:
        if range_end is None:
            kv = self._data.get(key)
            return [kv] if kv is not None else []
        return [kv for k, kv in sorted(self._data.items()) if _in_range(k, key, range_end)]

    def _holds(self, compare: Compare) -> bool:
        kv = self._data.get(compare.key)
        if kv is None:
            if compare.target is Target.VALUE:
                return False  # etcd: a value compare on a missing key always fails
            kv = KeyValue(compare.key, b"", 0, 0, 0, 0)
        actual: int | bytes
        if compare.target is Target.VALUE:
            actual = kv.value
        elif compare.target is Target.CREATE:
            actual = kv.create_revision
        elif compare.target is Target.MOD:
            actual = kv.mod_revision
        elif compare.target is Target.VERSION:
            actual = kv.version
        else:
            actual = kv.lease
        return actual == compare.value

    def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self.check()
        succeeded = all(self._holds(c) for c in compare)
        ops = success if succeeded else failure
        put_keys = [op.key for op in ops if isinstance(op, Put)]
        if len(set(put_keys)) != len(put_keys):  # etcd refuses it too
            raise RegistryError("etcd txn failed: etcdserver: duplicate key given in txn request")
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise LeaseLostError("etcd txn: lease not found (expired or revoked)")
        revision = self.revision + 1
        events: list[KVEvent] = []
        results: list[OpResult] = []
        for op in ops:
            if isinstance(op, Put):
                events.append(self._put(op, revision))
                results.append(OpResult())
            elif isinstance(op, Delete):
                deleted = self._delete(op.key, op.range_end, revision)
                events += deleted
                results.append(OpResult(deleted=len(deleted)))
            elif isinstance(op, Get):
                results.append(OpResult(kvs=self._select(op.key, op.range_end)))
        if events:
            self._commit(revision, events)
        return TxnResult(succeeded, self.revision, results)

    def _put(self, op: Put, revision: int) -> KVEvent:
        prev = self._data.get(op.key)
        if prev is not None and prev.lease in self._leases:
            self._leases[prev.lease].keys.discard(op.key)
        kv = KeyValue(
            key=op.key,
            value=op.value,
            create_revision=prev.create_revision if prev else revision,
            mod_revision=revision,
            version=prev.version + 1 if prev else 1,
            lease=op.lease,
        )
        self._data[op.key] = kv
        if op.lease:
            self._leases[op.lease].keys.add(op.key)
        return KVEvent(EventType.PUT, kv)

    def _delete(self, key: bytes, range_end: bytes | None, revision: int) -> list[KVEvent]:
        events = []
        for kv in self._select(key, range_end):
            del self._data[kv.key]
            if kv.lease in self._leases:
                self._leases[kv.lease].keys.discard(kv.key)
            events.append(KVEvent(EventType.DELETE, KeyValue(kv.key, b"", 0, revision, 0, 0)))
        return events

    def _commit(self, revision: int, events: list[KVEvent]) -> None:
        self.revision = revision
        self._history.append((revision, events))
        for sub in self._subscribers:
            mine = [e for e in events if _in_range(e.kv.key, sub.start, sub.end)]
            if mine:
                sub.queue.put_nowait(mine)

    def lease_grant(self, ttl: int) -> tuple[int, int]:
        self.check()
        self._next_lease += 1
        lease_id = self._next_lease
        self._leases[lease_id] = _Lease(ttl)
        self._arm(lease_id)
        return lease_id, ttl

    def _arm(self, lease_id: int) -> None:
        lease = self._leases[lease_id]
        if lease.timer is not None:
            lease.timer.cancel()
        loop = asyncio.get_running_loop()
        lease.timer = loop.call_later(lease.ttl, self._drop_lease, lease_id, "expired")

    def lease_keepalive(self, lease_id: int) -> int:
        self.check()
        if lease_id not in self._leases:
            return 0
        self._arm(lease_id)
        return self._leases[lease_id].ttl

    def lease_revoke(self, lease_id: int) -> None:
        self.check()
        self._drop_lease(lease_id, "revoked")

    def _drop_lease(self, lease_id: int, why: str) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        if lease.timer is not None:
            lease.timer.cancel()
        revision = self.revision + 1
        events = []
        for key in sorted(lease.keys):
            events += self._delete(key, None, revision)
        if events:
            self._commit(revision, events)
        log.info("memory etcd: lease %x %s, %d keys deleted", lease_id, why, len(events))
        for callback in self._lease_listeners.pop(lease_id, []):
            callback()

    async def watch(
        self, key: bytes, range_end: bytes, start_revision: int, owner: object = None
    ) -> AsyncGenerator[WatchBatch, None]:
        self.check()
        sub = _Subscriber(key, range_end, owner)
        # Register and copy the backlog in one step: nothing falls in between.
        self._subscribers.add(sub)
        compacted = start_revision < self.compacted
        backlog = [
            e
            for revision, events in self._history
            if revision >= start_revision
            for e in events
            if _in_range(e.kv.key, key, range_end)
        ]
        try:
            yield WatchBatch(created=True)
            if compacted:
                yield WatchBatch(compact_revision=self.compacted)
                return
            if backlog:
                yield WatchBatch(events=backlog)
            while True:
                item = await sub.queue.get()
                batch: list[KVEvent] = []
                while True:
                    if not isinstance(item, list):
                        if batch:
                            yield WatchBatch(events=batch)
                            batch = []
                        if isinstance(item, RegistryError):
                            raise item
                        yield WatchBatch(progress=item)
                    else:
                        batch += item
                    if sub.queue.empty():
                        break
                    item = sub.queue.get_nowait()
                if batch:
                    yield WatchBatch(events=batch)
        finally:
            self._subscribers.discard(sub)
