"""The base of KVRegistry (fleetpy.registry.store): a registry on a ``KVBackend``
under a key prefix, with the helpers every part of it uses (keys, one range
request per list, one transaction per write, skipping and reporting entries
that do not decode, the leader-key guard) and ``list_unreadable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from fleetpy.registry import codec
from fleetpy.registry.base import DEFAULT_PREFIX, LeaderToken, Lease, LeaseLostError
from fleetpy.registry.kv import Compare, KeyValue, KVBackend, Op, Target, TxnResult, prefix_end
from fleetpy.registry.lease import KeepaliveLease
from fleetpy.registry.unreadable import PREFIXES, REPORTS, Unreadable, problem_of

T = TypeVar("T")
DEFAULT_MAX_TXN_OPS = 128
CAS_ATTEMPTS = 10


class KVBase:
    """A registry's backend, prefix and open leases, and the helpers on them."""

    def __init__(
        self,
        backend: KVBackend,
        prefix: str = DEFAULT_PREFIX,
        *,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        own_backend: bool = True,
    ) -> None:
        self.backend = backend
        self.own_backend = own_backend
        self.prefix = codec.normalize_prefix(prefix)
        self.max_txn_ops = max_txn_ops
        self._closed = False
        self._leases: list[KeepaliveLease] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend.description} prefix={self.prefix}>"

    async def close(self) -> None:
        """Stop keepalives (leases then expire after their ttl), end watches, disconnect.

        A registry that does not own its backend (a shared connection) leaves it open.
        """
        self._closed = True
        leases, self._leases = self._leases, []
        for lease in leases:
            if lease.is_alive():
                await lease.stop_keepalive()
        if self.own_backend:
            await self.backend.close()

    # helpers ---------------------------------------------------------------

    def _key(self, relative: str) -> bytes:
        return (self.prefix + relative).encode()

    def _rel(self, key: bytes) -> str:
        return key.decode(errors="surrogateescape")[len(self.prefix) :]

    async def _list(self, relative_prefix: str) -> list[KeyValue]:
        prefix = self._key(relative_prefix)
        return list((await self.backend.range(prefix, prefix_end(prefix))).kvs)

    async def _get(self, relative: str) -> KeyValue | None:
        kvs = (await self.backend.range(self._key(relative))).kvs
        return kvs[0] if kvs else None

    async def _txn(
        self,
        compare: Sequence[Compare],
        ops: Sequence[Op],
        failure: Sequence[Op] = (),
        lease: Lease | None = None,
    ) -> TxnResult:
        try:
            return await self.backend.txn(compare, ops, failure)
        except LeaseLostError:
            if isinstance(lease, KeepaliveLease):
                lease.check_now()
            raise

    def _decoded(self, kvs: Iterable[KeyValue], decode: Callable[[KeyValue], T]) -> list[T]:
        """Decode each entry; one that does not decode is skipped and said once."""
        result: list[T] = []
        for kv in kvs:
            try:
                result.append(decode(kv))
            except ValueError as e:
                REPORTS.report(self._unreadable(kv, e))
        return result

    def _unreadable(self, kv: KeyValue, exc: Exception) -> Unreadable:
        rel = self._rel(kv.key)
        return Unreadable(self.prefix + rel, problem_of(rel, exc), kv.mod_revision)

    async def list_unreadable(self) -> list[Unreadable]:
        """Every entry under the registry's prefixes that does not decode, by key."""
        found: list[Unreadable] = []
        listings = await asyncio.gather(*(self._list(prefix) for prefix in PREFIXES))
        for kvs in listings:
            for kv in kvs:
                try:
                    codec.decode_entry(self._rel(kv.key), kv.value)
                except ValueError as e:
                    found.append(self._unreadable(kv, e))
        return sorted(found, key=lambda u: u.key)

    def _leader_guard(self, token: LeaderToken) -> list[Compare]:
        key = self._key(codec.LEADER)
        return [
            Compare(key, Target.VALUE, codec.encode_leader(token.machine_id)),
            Compare(key, Target.CREATE, token.create_revision),
        ]
