"""Many units at once (fleetpy.registry.bulk), on MemoryRegistry and on a real etcd."""

from __future__ import annotations

from fleetpy.model.types import TargetState
from fleetpy.registry import bulk
from fleetpy.registry.store import KVRegistry
from tests.contract.helpers import unit

N = 300  # more than two transactions' worth (etcd's 128 operations each)


def names(n: int = N) -> list[str]:
    return [f"u{i:04d}.service" for i in range(n)]


async def test_create_get_set_destroy_many(registry: KVRegistry) -> None:
    before = sum(registry.backend.requests.values())
    created = await registry.create_units([unit(n) for n in names()], TargetState.INACTIVE)
    assert created == dict.fromkeys(names(), True)
    got = await registry.get_units([*names(), "missing.service"])
    assert got["missing.service"] is None
    assert {r.desired for n in names() if (r := got[n]) is not None} == {TargetState.INACTIVE}
    assert all(got[n] is not None for n in names())
    done = await registry.set_desired_many([*names(), "missing.service"], TargetState.LAUNCHED)
    assert done == {**dict.fromkeys(names(), True), "missing.service": False}
    assert {r.desired for r in await registry.list_units()} == {TargetState.LAUNCHED}
    gone = await registry.destroy_units([*names(), "missing.service"])
    assert gone == {**dict.fromkeys(names(), True), "missing.service": False}
    assert await registry.list_units() == []
    # 3 transactions for each of create, get, set (read + write) and destroy, and
    # the 2 lists: not one request (or two) per unit
    assert sum(registry.backend.requests.values()) - before == 5 * 3 + 2


async def test_create_units_keeps_existing_ones_and_creates_the_rest(
    registry: KVRegistry,
) -> None:
    assert await registry.create_unit(unit("u0007.service", "mine"), TargetState.LOADED)
    created = await registry.create_units([unit(n) for n in names(20)], TargetState.INACTIVE)
    assert created == {**dict.fromkeys(names(20), True), "u0007.service": False}
    kept = await registry.get_unit("u0007.service")
    assert kept is not None and (kept.unit.contents, kept.desired) == ("mine", TargetState.LOADED)
    assert len(await registry.list_units()) == 20


async def test_set_desired_many_of_units_already_so_writes_nothing(registry: KVRegistry) -> None:
    await registry.create_units([unit(n) for n in names(10)], TargetState.LOADED)
    revisions = {n: r.revision for n, r in (await registry.get_units(names(10))).items() if r}
    assert await registry.set_desired_many(names(10), TargetState.LOADED) == dict.fromkeys(
        names(10), True)
    after = await registry.get_units(names(10))
    assert {n: r.revision for n, r in after.items() if r} == revisions


def test_chunks_respect_operation_count_and_bytes() -> None:
    sizes = [1] * 300
    assert [len(c) for c in bulk.chunks(sizes, 128, lambda s: s)] == [128, 128, 44]
    big = [bulk.MAX_TXN_BYTES // 2 + 1] * 3  # two do not fit in one transaction
    assert [len(c) for c in bulk.chunks(big, 128, lambda s: s)] == [1, 1, 1]
    assert list(bulk.chunks([], 128, lambda s: s)) == []


async def test_create_units_takes_a_repeated_name_once(registry: KVRegistry) -> None:
    """etcd refuses a transaction that puts one key twice (the fake does too): a name
    given twice counts once, with its first file."""
    first, second = unit("a.service", "[Service]\nExecStart=/bin/true\n"), unit("a.service")
    created = await registry.create_units([first, unit("b.service"), second],
                                          TargetState.LAUNCHED)
    assert created == {"a.service": True, "b.service": True}
    record = await registry.get_unit("a.service")
    assert record is not None and record.unit == first
