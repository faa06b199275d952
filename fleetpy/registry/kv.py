"""The key-value primitives the registry is written against (typed, etcd v3 shaped).

``KVRegistry`` (fleetpy.registry.store) implements every registry operation on
top of a ``KVBackend``: ``EtcdClient`` talks to etcd over gRPC, ``MemoryKV``
is an in-process store with the same revision, lease, transaction and watch
semantics. Keys and values here are raw bytes with the registry prefix included.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix`` (etcd's rule)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int = 1
    lease: int = 0


@dataclass(frozen=True, slots=True)
class RangeResult:
    """``kvs`` in key order; ``more``: a ``limit`` cut the range short."""

    revision: int
    kvs: Sequence[KeyValue]
    more: bool = False


class Target(enum.Enum):
    VALUE = "value"
    CREATE = "create"
    MOD = "mod"
    VERSION = "version"
    LEASE = "lease"


@dataclass(frozen=True, slots=True)
class Compare:
    """``key``'s ``target`` equals ``value`` (the only comparison fleetpy needs).

    A missing key compares as create/mod/version/lease 0 and value b"".
    """

    key: bytes
    target: Target
    value: int | bytes


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``key``, or ``[key, range_end)`` when range_end is given."""

    key: bytes
    range_end: bytes | None = None


@dataclass(frozen=True, slots=True)
class Get:
    key: bytes
    range_end: bytes | None = None


Op = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class OpResult:
    """Result of one op in a transaction: ``kvs`` for a Get, ``deleted`` for a Delete."""

    kvs: Sequence[KeyValue] = ()
    deleted: int = 0


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    results: Sequence[OpResult] = ()


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class KVEvent:
    type: EventType
    kv: KeyValue  # for a DELETE: key and mod_revision (the deletion's revision) only


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """One message of a watch stream.

    The first batch of a stream is ``created`` (no events). A batch with
    ``compact_revision`` > 0 says the requested start revision is compacted:
    the stream ends after it and the watcher must re-list. ``progress`` > 0
    says every change up to that revision has been delivered (etcd's progress
    notification), so a resumed watch may start after it.
    """

    events: Sequence[KVEvent] = ()
    created: bool = False
    compact_revision: int = 0
    progress: int = 0


class KVBackend(Protocol):
    """What the registry needs from etcd. Every method raises RegistryError on failure."""

    @property
    def description(self) -> str:
        """Where this backend connects, for logs (e.g. the endpoint list)."""

    @property
    def requests(self) -> collections.Counter[str]:
        """Requests made so far, by kind (range, txn, lease_keepalive, watch...)."""

    async def range(
        self, key: bytes, range_end: bytes | None = None, *, limit: int = 0, revision: int = 0
    ) -> RangeResult:
        """Keys in ``[key, range_end)`` (or ``key`` alone), the first ``limit`` of them
        (0: all), as of ``revision`` (0: now); RegistryError when that revision is
        compacted. ``RangeResult.revision`` is the store's revision, not ``revision``."""

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Atomically: if every compare holds, run ``success``, else ``failure``.

        Raises LeaseLostError if a Put names a lease that does not exist.
        """

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """-> (lease id, granted ttl)."""

    async def lease_keepalive(self, lease_id: int) -> int:
        """Refresh once; -> remaining TTL, <= 0 when the lease is gone."""

    async def lease_revoke(self, lease_id: int) -> None:
        """Revoke (deleting its keys); a lease that is already gone is not an error."""

    def watch(
        self, key: bytes, range_end: bytes, start_revision: int
    ) -> AsyncGenerator[WatchBatch, None]:
        """One watch stream from ``start_revision``; raises RegistryError when it breaks."""

    async def close(self) -> None: ...
