"""``cordoned/<machine_id>``: the registry's part of cordon and drain.

A mixin of KVRegistry (fleetpy.registry.store), so that both drivers (the
API's server and ``--driver etcd``) store the same keys. The key is on no
lease: a cordon outlives fleetd restarts and the machine's lease, until
``fleetctl uncordon`` deletes it. An entry that does not decode is skipped
and said once, like every other list.
"""

from __future__ import annotations

from fleetpy.model.cordon import Cordon
from fleetpy.registry import codec
from fleetpy.registry.kv import Delete, KVBackend, Put, prefix_end
from fleetpy.registry.unreadable import REPORTS, Unreadable, problem_of


class CordonStore:
    """put_cordon / delete_cordon / list_cordons on a KV backend under ``prefix``."""

    backend: KVBackend
    prefix: str

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
