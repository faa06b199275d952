"""The registry written once against ``KVBackend``: keys, values, transactions.

EtcdRegistry and MemoryRegistry are this class on two backends, so that the
fake has the real one's semantics by construction. Every list is one range
request; every write is one transaction, split where needed by
``bulk.chunks`` into transactions of at most ``max_txn_ops`` operations (etcd's
default limit, 128) and 1 MiB (etcd refuses requests over 1.5 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from fleetpy.model.metadata import MetadataChange
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.registry import bulk, codec, pages
from fleetpy.registry.base import (
    DEFAULT_PREFIX,
    LeaderToken,
    Lease,
    LeaseLostError,
    MachineBackError,
    NotLeaderError,
    RegistryError,
    UnitRecord,
    WatchUpdate,
)
from fleetpy.registry.cordons import CordonStore
from fleetpy.registry.kv import (
    Compare,
    Delete,
    KeyValue,
    KVBackend,
    Op,
    Put,
    Target,
    TxnResult,
    prefix_end,
)
from fleetpy.registry.lease import KeepaliveLease
from fleetpy.registry.unreadable import PREFIXES, REPORTS, Unreadable, problem_of
from fleetpy.registry.watch import resumable_watch

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_MAX_TXN_OPS = 128
_CAS_ATTEMPTS = 10


class KVRegistry(CordonStore):
    """Implements ``base.Registry`` on a ``KVBackend``."""

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
        for _ in range(_CAS_ATTEMPTS):
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

    async def set_desired_many(
        self, names: Sequence[str], desired: TargetState
    ) -> dict[str, bool]:
        return await bulk.set_desired_many(self, names, desired)

    async def destroy_units(self, names: Sequence[str]) -> dict[str, bool]:
        return await bulk.destroy_units(self, names)

    # machines and states -----------------------------------------------------

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
                [Compare(key, Target.MOD, current.mod_revision)], [put], lease=lease)
            if taken.succeeded:
                log.warning("machine %s: replaced an unusable record (no live agent's) with "
                            "ours on lease %x", machine.id, lease.id)
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

    async def set_machine_metadata(
        self, machine_id: str, change: MetadataChange
    ) -> Machine | None:
        key = self._key(codec.machine_key(machine_id))
        for _ in range(_CAS_ATTEMPTS):
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

    # schedule ------------------------------------------------------------------

    async def list_schedule(self, machine_id: str | None = None) -> list[ScheduledUnit]:
        kvs = await self._list(codec.schedule_prefix(machine_id))
        return self._decoded(kvs, lambda kv: codec.decode_scheduled(self._rel(kv.key), kv.value))

    async def apply_schedule(
        self,
        token: LeaderToken,
        put: Sequence[ScheduledUnit],
        delete: Sequence[tuple[str, str]],
        waiting: Mapping[str, str | None] | None = None,
        absent: Sequence[str] = (),
    ) -> None:
        """See ``base.Registry.apply_schedule``.

        Changes of more than ``max_txn_ops`` operations (or 1 MiB) are written in
        several transactions, each guarded by the leader key, several at once:
        atomic per chunk only. Then every removal lands before any new entry, so
        that a unit moving between machines is never scheduled on both at once.
        """
        deletes: list[Op] = [Delete(self._key(codec.schedule_key(m, n))) for m, n in delete]
        puts: list[Op] = [
            Put(self._key(codec.schedule_key(s.machine_id, s.name)), codec.encode_scheduled(s))
            for s in put
        ]
        for name, reason in (waiting or {}).items():
            key = self._key(codec.waiting_key(name))
            puts.append(Delete(key) if reason is None else Put(key, codec.encode_waiting(reason)))
        guard = self._leader_guard(token) + [
            Compare(self._key(codec.machine_key(m)), Target.CREATE, 0) for m in absent]

        async def write(chunk: Sequence[Op]) -> bool:
            return (await self._txn(guard, chunk)).succeeded

        whole = list(bulk.chunks(deletes + puts, self.max_txn_ops, bulk.op_size))
        phases = [whole] if len(whole) <= 1 else [
            list(bulk.chunks(deletes, self.max_txn_ops, bulk.op_size)),
            list(bulk.chunks(puts, self.max_txn_ops, bulk.op_size)),
        ]
        for parts in [p for p in phases if p] or [[[]]]:  # an empty write checks the lead
            if not all(await bulk.each(parts, write)):
                back = [m for m in absent if await self._get(codec.machine_key(m)) is not None]
                if back:
                    raise MachineBackError(
                        f"schedule write refused: machine {', '.join(back)} registered again")
                log.warning("schedule write refused: %s no longer holds the lead",
                            token.machine_id)
                raise NotLeaderError(f"{token.machine_id} is no longer the engine leader")

    async def get_waiting(self, names: Sequence[str]) -> dict[str, str]:
        """The waiting reasons of those of ``names`` that wait (point reads)."""
        found = await asyncio.gather(*(self._get(codec.waiting_key(n)) for n in names))
        kvs = [kv for kv in found if kv is not None]
        pairs = self._decoded(kvs, lambda kv: codec.decode_waiting(self._rel(kv.key), kv.value))
        return dict(pairs)

    async def lease_alive(self, lease: Lease) -> bool:
        """Ask etcd now whether ``lease`` still exists (this refreshes it)."""
        return await self.backend.lease_keepalive(lease.id) > 0

    async def list_waiting(self) -> dict[str, str]:
        kvs = await self._list(codec.WAITING)
        pairs = self._decoded(kvs, lambda kv: codec.decode_waiting(self._rel(kv.key), kv.value))
        return dict(pairs)

    # leadership ----------------------------------------------------------------

    async def campaign(self, machine_id: str, lease: Lease) -> LeaderToken | None:
        key = self._key(codec.LEADER)
        put = Put(key, codec.encode_leader(machine_id), lease.id)
        for _ in range(3):
            result = await self._txn([Compare(key, Target.CREATE, 0)], [put], lease=lease)
            if result.succeeded:
                log.info("%s took the engine lead (lease %x)", machine_id, lease.id)
                return LeaderToken(machine_id, result.revision, lease.id)
            current = await self._get(codec.LEADER)
            if current is None:
                continue  # the leader resigned meanwhile: try again
            if current.lease == lease.id:
                with contextlib.suppress(ValueError):
                    if codec.decode_leader(current.value) == machine_id:
                        return LeaderToken(machine_id, current.create_revision, lease.id)
                return None
            if not await self._clear_unusable_leader(current):
                return None
        return None

    async def _clear_unusable_leader(self, current: KeyValue) -> bool:
        """Delete a leader key no fleetd wrote (unreadable, or on no lease); True if so.

        Such a key never expires: left alone, no engine would ever lead again.
        The delete compares the mod revision, so a real leader is never removed.
        """
        try:
            codec.decode_leader(current.value)
            problem = None if current.lease else "not on a lease (it would never expire)"
        except ValueError as e:
            problem = problem_of(codec.LEADER, e)
        if problem is None:
            return False
        REPORTS.report(Unreadable(self.prefix + codec.LEADER, problem, current.mod_revision))
        key = self._key(codec.LEADER)
        result = await self._txn(
            [Compare(key, Target.MOD, current.mod_revision)], [Delete(key)])
        if result.succeeded:
            log.warning("deleted the unusable engine leader key %s%s so that an engine can "
                        "lead", self.prefix, codec.LEADER)
        return True

    async def get_leader(self) -> str | None:
        kv = await self._get(codec.LEADER)
        if kv is None:
            return None
        try:
            return codec.decode_leader(kv.value)
        except ValueError as e:  # names no leader; the next campaign clears it
            REPORTS.report(self._unreadable(kv, e))
            return None

    async def resign(self, token: LeaderToken) -> None:
        result = await self._txn(self._leader_guard(token), [Delete(self._key(codec.LEADER))])
        if result.succeeded:
            log.info("%s resigned the engine lead", token.machine_id)

    # watches -------------------------------------------------------------------

    def watch(self, prefix: str) -> AsyncGenerator[WatchUpdate, None]:
        return resumable_watch(
            self.backend,
            self._key(prefix),
            len(self.prefix),
            closed=lambda: self._closed,
        )
