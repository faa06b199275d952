"""The keys fleetd's engine writes, a mixin of KVRegistry (fleetpy.registry.store):
the schedule (written only under the leader key), the waiting reasons, and the
engine leader key (campaign, resign, and clearing a leader key no fleetd wrote).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

from fleetpy.model.types import ScheduledUnit
from fleetpy.registry import bulk, codec
from fleetpy.registry.base import LeaderToken, Lease, MachineBackError, NotLeaderError
from fleetpy.registry.kv import Compare, Delete, KeyValue, Op, Put, Target
from fleetpy.registry.kvbase import KVBase
from fleetpy.registry.unreadable import REPORTS, Unreadable, problem_of

log = logging.getLogger("fleetpy.registry.store")  # its lines kept their logger in the split


class EngineStore(KVBase):
    """The schedule, waiting reasons and leader key on a ``KVBackend``."""

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
            Compare(self._key(codec.machine_key(m)), Target.CREATE, 0) for m in absent
        ]

        async def write(chunk: Sequence[Op]) -> bool:
            return (await self._txn(guard, chunk)).succeeded

        whole = list(bulk.chunks(deletes + puts, self.max_txn_ops, bulk.op_size))
        phases = (
            [whole]
            if len(whole) <= 1
            else [
                list(bulk.chunks(deletes, self.max_txn_ops, bulk.op_size)),
                list(bulk.chunks(puts, self.max_txn_ops, bulk.op_size)),
            ]
        )
        for parts in [p for p in phases if p] or [[[]]]:  # an empty write checks the lead
            if not all(await bulk.each(parts, write)):
                back = [m for m in absent if await self._get(codec.machine_key(m)) is not None]
                if back:
                    raise MachineBackError(
                        f"schedule write refused: machine {', '.join(back)} registered again"
                    )
                log.warning("schedule write refused: %s no longer holds the lead", token.machine_id)
                raise NotLeaderError(f"{token.machine_id} is no longer the engine leader")

    async def get_waiting(self, names: Sequence[str]) -> dict[str, str]:
        """The waiting reasons of those of ``names`` that wait (point reads)."""
        found = await asyncio.gather(*(self._get(codec.waiting_key(n)) for n in names))
        kvs = [kv for kv in found if kv is not None]
        pairs = self._decoded(kvs, lambda kv: codec.decode_waiting(self._rel(kv.key), kv.value))
        return dict(pairs)

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
        result = await self._txn([Compare(key, Target.MOD, current.mod_revision)], [Delete(key)])
        if result.succeeded:
            log.warning(
                "deleted the unusable engine leader key %s%s so that an engine can lead",
                self.prefix,
                codec.LEADER,
            )
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
