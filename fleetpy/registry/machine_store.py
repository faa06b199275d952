"""The keys fleetd's agent writes, a mixin of KVRegistry (fleetpy.registry.store):
leases, ``machines/<id>`` (registration, update, metadata), the unit states a
machine reports (also in pages) and the units it refuses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace

from fleetpy.model.metadata import MetadataChange
from fleetpy.model.types import Machine, UnitState
from fleetpy.registry import bulk, codec, pages
from fleetpy.registry.base import Lease, LeaseLostError, RegistryError
from fleetpy.registry.kv import Compare, Delete, KeyValue, Op, Put, Target
from fleetpy.registry.kvbase import CAS_ATTEMPTS, KVBase
from fleetpy.registry.lease import KeepaliveLease
from fleetpy.registry.unreadable import REPORTS

log = logging.getLogger("fleetpy.registry.store")  # its lines kept their logger in the split


class MachineStore(KVBase):
    """Leases, machines, unit states and refusals on a ``KVBackend``."""

    # leases ------------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> Lease:
        if self._closed:
            raise RegistryError("registry is closed")
        sent = asyncio.get_running_loop().time()
        lease_id, granted = await self.backend.lease_grant(ttl)
        lease = KeepaliveLease(self.backend, lease_id, granted, sent)
        self._leases = [held for held in self._leases if held.is_alive()] + [lease]
        log.info("lease %x granted, ttl %ds", lease_id, granted)
        return lease

    async def adopt_lease(self, lease_id: int, ttl: int) -> Lease | None:
        if self._closed:
            raise RegistryError("registry is closed")
        sent = asyncio.get_running_loop().time()
        remaining = await self.backend.lease_keepalive(lease_id)
        if remaining <= 0:
            log.info("lease %x no longer exists, not adopted", lease_id)
            return None
        lease = KeepaliveLease(self.backend, lease_id, ttl, sent)
        self._leases = [held for held in self._leases if held.is_alive()] + [lease]
        log.info("lease %x adopted (%ds left), keeping it alive", lease_id, remaining)
        return lease

    async def lease_alive(self, lease: Lease) -> bool:
        """Ask etcd now whether ``lease`` still exists (this refreshes it)."""
        return await self.backend.lease_keepalive(lease.id) > 0

    # machines and states -----------------------------------------------------

    async def register_machine(self, machine: Machine, lease: Lease) -> bool:
        key = self._key(codec.machine_key(machine.id))
        put = Put(key, codec.encode_machine(machine), lease.id)
        result = await self._txn([Compare(key, Target.CREATE, 0)], [put], lease=lease)
        if result.succeeded:
            log.info("machine %s registered on lease %x", machine.id, lease.id)
            return True
        # Already there: ours (a repeated registration) is updated, another live one refused.
        retry = await self._txn([Compare(key, Target.LEASE, lease.id)], [put], lease=lease)
        if retry.succeeded:
            return True
        current = await self._get(codec.machine_key(machine.id))
        if current is not None and self._unusable_machine(current):
            # No agent wrote this (garbage, or a put on no lease): it would never expire.
            taken = await self._txn(
                [Compare(key, Target.MOD, current.mod_revision)], [put], lease=lease
            )
            if taken.succeeded:
                log.warning(
                    "machine %s: replaced an unusable record (no live agent's) with "
                    "ours on lease %x",
                    machine.id,
                    lease.id,
                )
                return True
        log.warning("machine %s is already registered by another live agent", machine.id)
        return False

    def _unusable_machine(self, kv: KeyValue) -> bool:
        """A machine record no live agent holds: on no lease, or not decodable."""
        try:
            codec.decode_machine(self._rel(kv.key), kv.value)
        except ValueError as e:
            REPORTS.report(self._unreadable(kv, e))
            return True
        return kv.lease == 0

    async def update_machine(self, machine: Machine, lease: Lease) -> None:
        key = self._key(codec.machine_key(machine.id))
        put = Put(key, codec.encode_machine(machine), lease.id)
        if not (
            await self._txn([Compare(key, Target.LEASE, lease.id)], [put], lease=lease)
        ).succeeded:
            raise RegistryError(f"machine {machine.id} is not registered on lease {lease.id:x}")

    async def set_machine_metadata(self, machine_id: str, change: MetadataChange) -> Machine | None:
        key = self._key(codec.machine_key(machine_id))
        for _ in range(CAS_ATTEMPTS):
            kv = await self._get(codec.machine_key(machine_id))
            if kv is None:
                return None
            try:
                machine = codec.decode_machine(self._rel(kv.key), kv.value)
            except ValueError as e:
                raise RegistryError(f"unreadable machine {machine_id}: {e}") from None
            machine = replace(machine, metadata=change.apply(machine.metadata))
            put = Put(key, codec.encode_machine(machine), kv.lease)
            try:
                result = await self._txn([Compare(key, Target.MOD, kv.mod_revision)], [put])
            except LeaseLostError:
                return None  # its agent's lease just expired: the machine is gone
            if result.succeeded:
                return machine
        raise RegistryError(f"machine {machine_id} kept changing; metadata not set")

    async def list_machines(self) -> list[Machine]:
        kvs = await self._list(codec.MACHINES)
        return self._decoded(kvs, lambda kv: codec.decode_machine(self._rel(kv.key), kv.value))

    async def put_unit_states(self, states: Sequence[UnitState], lease: Lease) -> None:
        puts = [
            Put(self._key(codec.state_key(s.machine_id, s.name)), codec.encode_state(s), lease.id)
            for s in states
        ]
        for chunk in bulk.chunks(puts, self.max_txn_ops, bulk.op_size):
            await self._txn([], chunk, lease=lease)

    async def delete_unit_states(self, machine_id: str, names: Sequence[str]) -> None:
        deletes = [Delete(self._key(codec.state_key(machine_id, name))) for name in names]
        for chunk in bulk.chunks(deletes, self.max_txn_ops, bulk.op_size):
            await self._txn([], chunk)

    async def list_unit_states(self, machine_id: str | None = None) -> list[UnitState]:
        kvs = await self._list(codec.states_prefix(machine_id))
        return self._decoded(kvs, lambda kv: codec.decode_state(self._rel(kv.key), kv.value))

    def unit_state_pages(
        self, machine_id: str | None = None, page_size: int = pages.DEFAULT_PAGE
    ) -> AsyncGenerator[list[UnitState], None]:
        return pages.unit_state_pages(self, machine_id, page_size)

    def machine_pages(
        self, page_size: int = pages.DEFAULT_PAGE
    ) -> AsyncGenerator[list[Machine], None]:
        return pages.machine_pages(self, page_size)

    async def put_refusals(
        self, machine_id: str, changes: Mapping[str, str | None], lease: Lease
    ) -> None:
        ops: list[Op] = []
        for name, reason in changes.items():
            key = self._key(codec.refused_key(machine_id, name))
            ops.append(
                Delete(key) if reason is None else Put(key, codec.encode_refusal(reason), lease.id)
            )
        for chunk in bulk.chunks(ops, self.max_txn_ops, bulk.op_size):
            await self._txn([], chunk, lease=lease)

    async def list_refusals(self, machine_id: str | None = None) -> dict[tuple[str, str], str]:
        kvs = await self._list(codec.refused_prefix(machine_id))
        found = self._decoded(kvs, lambda kv: codec.decode_refusal(self._rel(kv.key), kv.value))
        return {(m, n): reason for m, n, reason in found}
