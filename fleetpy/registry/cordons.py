"""``cordoned/<machine_id>``: the registry's part of cordon and drain.

A mixin of KVRegistry (fleetpy.registry.store), so that both drivers (the
API's server and ``--driver etcd``) store the same keys. The key is on no
lease: a cordon outlives fleetd restarts and the machine's lease, until
``fleetctl uncordon`` deletes it. An entry that does not decode is skipped
and said once, like every other list.

A drain in progress is carried on by the engine (fleetpy.engine.drainer),
while fleetctl may change its parameters: both write with ``update_cordon``,
a compare-and-swap on the record as read (and, for the engine, on the leader
key), so neither undoes the other's write, and an uncordon is never undone.
``get_unit_states`` reads the few states a drain waits for, by key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fleetpy.model.cordon import Cordon
from fleetpy.model.types import UnitState
from fleetpy.registry import bulk, codec
from fleetpy.registry.kv import Compare, Delete, Get, KVBackend, Op, Put, Target, prefix_end
from fleetpy.registry.unreadable import REPORTS, Unreadable, problem_of

if TYPE_CHECKING:
    from fleetpy.registry.base import LeaderToken


class CordonStore:
    """put_cordon / delete_cordon / list_cordons on a KV backend under ``prefix``."""

    backend: KVBackend
    prefix: str
    max_txn_ops: int

    if TYPE_CHECKING:
        def _leader_guard(self, token: LeaderToken) -> list[Compare]: ...

    def _cordon_key(self, machine_id: str) -> bytes:
        return (self.prefix + codec.cordon_key(machine_id)).encode()

    async def put_cordon(self, cordon: Cordon) -> None:
        """Create or replace the machine's cordon (state, who/when/why, drain requests)."""
        key = self._cordon_key(cordon.machine_id)
        await self.backend.txn([], [Put(key, codec.encode_cordon(cordon))])

    async def delete_cordon(self, machine_id: str) -> bool:
        """Uncordon; False when the machine was not cordoned."""
        result = await self.backend.txn([], [Delete(self._cordon_key(machine_id))])
        return result.results[0].deleted > 0

    async def list_cordons(self) -> dict[str, Cordon]:
        start = (self.prefix + codec.CORDONED).encode()
        found: dict[str, Cordon] = {}
        for kv in (await self.backend.range(start, prefix_end(start))).kvs:
            rel = kv.key.decode(errors="surrogateescape")[len(self.prefix):]
            try:
                cordon = codec.decode_cordon(rel, kv.value)
            except ValueError as exc:
                REPORTS.report(Unreadable(self.prefix + rel, problem_of(rel, exc),
                                          kv.mod_revision))
                continue
            found[cordon.machine_id] = cordon
        return found

    async def update_cordon(
        self, cordon: Cordon, expected: Cordon | None, token: LeaderToken | None = None
    ) -> bool:
        """Write ``cordon`` only if the stored record still reads as ``expected`` (None:
        there is none) and, with ``token``, only while it holds the engine lead.

        False when either no longer holds (nothing written): read again and decide again.
        """
        key = self._cordon_key(cordon.machine_id)
        kvs = (await self.backend.range(key)).kvs
        try:
            stored = codec.decode_cordon(codec.cordon_key(cordon.machine_id), kvs[0].value) \
                if kvs else None
        except ValueError:
            return False  # unreadable: the user's to fix (list-unreadable says it)
        if stored != expected:
            return False
        compare = [Compare(key, Target.MOD, kvs[0].mod_revision if kvs else 0)]
        if token is not None:
            compare += self._leader_guard(token)
        result = await self.backend.txn(compare, [Put(key, codec.encode_cordon(cordon))])
        return result.succeeded

    async def get_unit_states(self, keys: Sequence[tuple[str, str]]) -> list[UnitState]:
        """The states reported for these (machine id, unit) pairs; absent ones are left
        out (an entry that does not decode too, said once)."""
        ops: list[Op] = [Get((self.prefix + codec.state_key(m, n)).encode()) for m, n in keys]
        found: list[UnitState] = []
        for chunk in bulk.chunks(ops, self.max_txn_ops, bulk.op_size):
            result = await self.backend.txn([], chunk)
            for one in result.results:
                for kv in one.kvs:
                    rel = kv.key.decode(errors="surrogateescape")[len(self.prefix):]
                    try:
                        found.append(codec.decode_state(rel, kv.value))
                    except ValueError as exc:
                        REPORTS.report(Unreadable(self.prefix + rel, problem_of(rel, exc),
                                                  kv.mod_revision))
        return found
