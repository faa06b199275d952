"""Many units at once: what ``fleetctl start`` of 10,000 files needs from etcd.

Each operation packs its work into transactions of at most ``max_txn_ops``
operations and ``MAX_TXN_BYTES`` of keys and values (etcd refuses requests
over 1.5 MiB by default), instead of one request (or two) per unit:

- ``get_units``: Get ops, no compares;
- ``create_units``: create-if-absent for a whole chunk (one compare per key;
  a name given twice counts once, with its first file);
  when any already exists, that chunk falls back to one transaction per unit
  so that the others are still created;
- ``set_desired_many``: read the records (batched), then one transaction per
  chunk comparing each key's mod revision; a chunk that lost a race falls
  back to the one-unit compare-and-swap loop;
- ``destroy_units``: Delete ops.

Up to IN_FLIGHT transactions run at once. Called by KVRegistry
(fleetpy.registry.store); pure helpers plus the calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from fleetpy import concurrency
from fleetpy.model.types import TargetState, UnitFile
from fleetpy.registry import codec
from fleetpy.registry.base import RegistryError, UnitRecord
from fleetpy.registry.kv import Compare, Delete, Get, Op, Put, Target, TxnResult

if TYPE_CHECKING:
    from fleetpy.registry.store import KVRegistry

MAX_TXN_BYTES = 1024 * 1024
IN_FLIGHT = 8  # transactions at once: etcd commits concurrent ones with one fsync
T = TypeVar("T")
R = TypeVar("R")


async def each(parts: Iterable[T], call: Callable[[T], Awaitable[R]]) -> list[R]:
    """``call`` on every part (one transaction each), IN_FLIGHT at a time; in order."""
    return await concurrency.each(parts, call, IN_FLIGHT)


def chunks(items: Sequence[T], max_ops: int, size: Callable[[T], int]) -> Iterator[Sequence[T]]:
    """Consecutive runs of ``items`` with at most ``max_ops`` items and MAX_TXN_BYTES."""
    start, total = 0, 0
    for i, item in enumerate(items):
        n = size(item)
        if i > start and (i - start >= max_ops or total + n > MAX_TXN_BYTES):
            yield items[start:i]
            start, total = i, 0
        total += n
    if start < len(items):
        yield items[start:]


def op_size(op: Op) -> int:
    """Bytes an operation adds to a transaction (key, value and some framing)."""
    return len(op.key) + len(getattr(op, "value", b"")) + 16


def _unit_size(unit: UnitFile) -> int:
    return len(unit.name) + len(unit.contents) + 128


def _name_size(name: str) -> int:
    return len(name) + 64


async def get_units(reg: KVRegistry, names: Sequence[str]) -> dict[str, UnitRecord | None]:
    """name -> its record, or None when there is no such unit."""
    found: dict[str, UnitRecord | None] = {}
    unique = list(dict.fromkeys(names))

    async def read(chunk: Sequence[str]) -> TxnResult:
        ops: list[Op] = [Get(reg._key(codec.unit_key(n))) for n in chunk]
        return await reg._txn([], ops)

    parts = list(chunks(unique, reg.max_txn_ops, _name_size))
    for chunk, result in zip(parts, await each(parts, read), strict=True):
        for name, res in zip(chunk, result.results, strict=True):
            kv = res.kvs[0] if res.kvs else None
            if kv is None:
                found[name] = None
                continue
            try:
                found[name] = codec.decode_unit(reg._rel(kv.key), kv.value, kv.mod_revision)
            except ValueError as e:
                raise RegistryError(f"unreadable unit {name}: {e}") from None
    return found


async def create_units(
    reg: KVRegistry, units: Sequence[UnitFile], desired: TargetState
) -> dict[str, bool]:
    """name -> True when created, False when a unit of that name already existed.

    A name given twice counts once, with its first file (etcd refuses a transaction
    that puts one key twice), as fleetctl keeps the first of repeated arguments.
    """
    first: dict[str, UnitFile] = {}
    for u in units:
        first.setdefault(u.name, u)
    units = list(first.values())

    async def create(chunk: Sequence[UnitFile]) -> list[bool]:
        keys = [reg._key(codec.unit_key(u.name)) for u in chunk]
        compares = [Compare(k, Target.CREATE, 0) for k in keys]
        puts: list[Op] = [Put(k, codec.encode_unit(u, desired)) for k, u in zip(keys, chunk,
                                                                             strict=True)]
        if (await reg._txn(compares, puts)).succeeded:
            return [True] * len(chunk)
        return list(await asyncio.gather(*(reg.create_unit(u, desired) for u in chunk)))

    parts = list(chunks(units, reg.max_txn_ops, _unit_size))
    created: dict[str, bool] = {}
    for chunk, done in zip(parts, await each(parts, create), strict=True):
        created.update(zip((u.name for u in chunk), done, strict=True))
    return created


async def set_desired_many(
    reg: KVRegistry, names: Sequence[str], desired: TargetState
) -> dict[str, bool]:
    """name -> True when set (or already so), False when there is no such unit."""
    records = await get_units(reg, names)
    done = {name: False for name, rec in records.items() if rec is None}
    done.update((name, True) for name, rec in records.items()
                if rec is not None and rec.desired == desired)
    todo = [rec for rec in records.values() if rec is not None and rec.desired != desired]

    async def write(chunk: Sequence[UnitRecord]) -> list[bool]:
        keys = [reg._key(codec.unit_key(r.unit.name)) for r in chunk]
        compares = [Compare(k, Target.MOD, r.revision) for k, r in zip(keys, chunk, strict=True)]
        puts: list[Op] = [Put(k, codec.encode_unit(r.unit, desired))
                          for k, r in zip(keys, chunk, strict=True)]
        if (await reg._txn(compares, puts)).succeeded:
            return [True] * len(chunk)
        return list(await asyncio.gather(*(reg.set_desired(r.unit.name, desired)
                                           for r in chunk)))

    parts = list(chunks(todo, reg.max_txn_ops, lambda r: _unit_size(r.unit)))
    for chunk, results in zip(parts, await each(parts, write), strict=True):
        done.update(zip((r.unit.name for r in chunk), results, strict=True))
    return done


async def destroy_units(reg: KVRegistry, names: Sequence[str]) -> dict[str, bool]:
    """name -> True when it was removed, False when there was no such unit."""
    gone: dict[str, bool] = {}
    unique = list(dict.fromkeys(names))

    async def delete(chunk: Sequence[str]) -> TxnResult:
        ops: list[Op] = [Delete(reg._key(codec.unit_key(n))) for n in chunk]
        return await reg._txn([], ops)

    parts = list(chunks(unique, reg.max_txn_ops, _name_size))
    for chunk, result in zip(parts, await each(parts, delete), strict=True):
        gone.update((n, r.deleted > 0) for n, r in zip(chunk, result.results, strict=True))
    return gone
