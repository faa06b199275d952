"""The registry written once against ``KVBackend``: keys, values, transactions.

EtcdRegistry and MemoryRegistry are this class on two backends, so that the
fake has the real one's semantics by construction. Every list is one range
request; every write is one transaction, split where needed by
``bulk.chunks`` into transactions of at most ``max_txn_ops`` operations (etcd's
default limit, 128) and 1 MiB (etcd refuses requests over 1.5 MiB).

Its parts: ``kvbase`` (backend, prefix, helpers), ``machine_store`` (leases,
machines, unit states, refusals), ``engine_store`` (schedule, waiting, leader),
``cordons``; the units and watches are here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from fleetpy.model.types import TargetState, UnitFile
from fleetpy.registry import bulk, codec
from fleetpy.registry.base import RegistryError, UnitRecord, WatchUpdate
from fleetpy.registry.cordons import CordonStore
from fleetpy.registry.engine_store import EngineStore
from fleetpy.registry.kv import Compare, Delete, Put, Target
from fleetpy.registry.kvbase import CAS_ATTEMPTS, DEFAULT_MAX_TXN_OPS
from fleetpy.registry.machine_store import MachineStore
from fleetpy.registry.watch import resumable_watch

__all__ = ["DEFAULT_MAX_TXN_OPS", "KVRegistry"]


class KVRegistry(MachineStore, EngineStore, CordonStore):
    """Implements ``base.Registry`` on a ``KVBackend``."""

    # units -----------------------------------------------------------------

    async def create_unit(self, unit: UnitFile, desired: TargetState) -> bool:
        key = self._key(codec.unit_key(unit.name))
        put = Put(key, codec.encode_unit(unit, desired))
        return (await self._txn([Compare(key, Target.CREATE, 0)], [put])).succeeded

    async def put_unit(self, unit: UnitFile, desired: TargetState) -> None:
        await self._txn(
            [], [Put(self._key(codec.unit_key(unit.name)), codec.encode_unit(unit, desired))]
        )

    async def get_unit(self, name: str) -> UnitRecord | None:
        kv = await self._get(codec.unit_key(name))
        if kv is None:
            return None
        try:
            return codec.decode_unit(self._rel(kv.key), kv.value, kv.mod_revision)
        except ValueError as e:
            raise RegistryError(f"unreadable unit {name}: {e}") from None

    async def list_units(self) -> list[UnitRecord]:
        kvs = await self._list(codec.UNITS)
        return self._decoded(
            kvs, lambda kv: codec.decode_unit(self._rel(kv.key), kv.value, kv.mod_revision)
        )

    async def set_desired(self, name: str, desired: TargetState) -> bool:
        key = self._key(codec.unit_key(name))
        for _ in range(CAS_ATTEMPTS):
            kv = await self._get(codec.unit_key(name))
            if kv is None:
                return False
            try:
                record = codec.decode_unit(self._rel(kv.key), kv.value)
            except ValueError as e:
                raise RegistryError(f"unreadable unit {name}: {e}") from None
            if record.desired == desired:
                return True
            put = Put(key, codec.encode_unit(record.unit, desired))
            if (await self._txn([Compare(key, Target.MOD, kv.mod_revision)], [put])).succeeded:
                return True
        raise RegistryError(f"unit {name} kept changing; desired state not set")

    async def destroy_unit(self, name: str) -> bool:
        result = await self._txn([], [Delete(self._key(codec.unit_key(name)))])
        return result.results[0].deleted > 0

    # many units at once (fleetpy.registry.bulk) -------------------------------

    async def get_units(self, names: Sequence[str]) -> dict[str, UnitRecord | None]:
        return await bulk.get_units(self, names)

    async def create_units(
        self, units: Sequence[UnitFile], desired: TargetState
    ) -> dict[str, bool]:
        return await bulk.create_units(self, units, desired)

    async def set_desired_many(self, names: Sequence[str], desired: TargetState) -> dict[str, bool]:
        return await bulk.set_desired_many(self, names, desired)

    async def destroy_units(self, names: Sequence[str]) -> dict[str, bool]:
        return await bulk.destroy_units(self, names)

    # watches -------------------------------------------------------------------

    def watch(self, prefix: str) -> AsyncGenerator[WatchUpdate, None]:
        return resumable_watch(
            self.backend,
            self._key(prefix),
            len(self.prefix),
            closed=lambda: self._closed,
        )
