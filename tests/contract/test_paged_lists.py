"""Listings in pages: the registry's ``unit_state_pages``/``machine_pages`` (on a real
etcd and on MemoryRegistry), the API's StreamUnitStates/StreamMachines, and
``fleetctl list-units``/``list-machines`` over both drivers, which read them so.

Each checks more than one page, and that the pages together are exactly the
unpaged listing (and fleetctl's table exactly the table of the unpaged rows).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import grpc
import pytest

from fleetpy.api.client import ApiDriver
from fleetpy.api.server import FleetService, start_api_server
from fleetpy.ctl import listing, lists
from fleetpy.ctl.render import render
from fleetpy.model.types import Machine, UnitState
from fleetpy.registry.base import Registry, RegistryError
from fleetpy.registry.etcd import EtcdRegistry
from fleetpy.registry.memory import MemoryRegistry
from tests.fixtures.etcd import EtcdProcess
from tests.unit.test_ctl_support import Cluster

pytestmark = pytest.mark.etcd

MACHINES = [Machine(f"{i:02x}" * 16, f"10.0.0.{i}", {"rack": f"r{i % 3}"}) for i in range(1, 8)]


def states(count: int, machines: list[Machine] = MACHINES, tag: str = "") -> list[UnitState]:
    return [UnitState(f"u{i:03}{tag}.service", machines[i % len(machines)].id, "loaded",
                      "active", "running", f"{i:040x}") for i in range(count)]


@pytest.fixture(params=["memory", "etcd"])
def make_registry(request: pytest.FixtureRequest, etcd_prefix: str) -> Callable[[], Registry]:
    if request.param == "memory":
        return MemoryRegistry
    etcd: EtcdProcess = request.getfixturevalue("etcd_server")
    return lambda: EtcdRegistry(etcd.endpoint, etcd_prefix)


def range_requests(registry: Registry) -> int:
    return int(registry.backend.requests["range"])  # type: ignore[attr-defined]


async def collect(pages: AsyncIterator[list[Any]]) -> list[list[Any]]:
    async with aclosing(pages) as it:  # type: ignore[type-var]
        return [page async for page in it]


async def test_pages_are_the_listing(make_registry: Callable[[], Registry]) -> None:
    registry = make_registry()
    try:
        lease = await registry.grant_lease(60)
        for m in MACHINES:
            await registry.register_machine(m, lease)
        await registry.put_unit_states(states(23), lease)
        before = range_requests(registry)
        pages = await collect(registry.unit_state_pages(None, 5))
        assert range_requests(registry) - before == 5  # one range request per page
        assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
        assert [s for p in pages for s in p] == await registry.list_unit_states()
        one = await collect(registry.unit_state_pages(MACHINES[2].id, 2))
        assert len(one) > 1
        assert [s for p in one for s in p] == await registry.list_unit_states(MACHINES[2].id)
        machine_pages = await collect(registry.machine_pages(3))
        assert [len(p) for p in machine_pages] == [3, 3, 1]
        assert [m for p in machine_pages for m in p] == await registry.list_machines()
        assert await collect(registry.unit_state_pages("f" * 32, 5)) == []
        with pytest.raises(ValueError, match="page size"):
            await collect(registry.unit_state_pages(None, 0))
    finally:
        await registry.close()


async def test_pages_are_read_at_the_first_pages_revision(
    make_registry: Callable[[], Registry],
) -> None:
    """Writes while the pages are read do not show: the listing is one revision."""
    registry = make_registry()
    try:
        lease = await registry.grant_lease(60)
        for m in MACHINES[:2]:
            await registry.register_machine(m, lease)
        await registry.put_unit_states(states(12, MACHINES[:2]), lease)
        expected = await registry.list_unit_states()
        got: list[UnitState] = []
        async with aclosing(registry.unit_state_pages(None, 4)) as pages:
            async for page in pages:
                got.extend(page)
                if len(got) == 4:  # after the first page: change, add and remove states
                    changed = [UnitState(s.name, s.machine_id, "loaded", "failed", "failed",
                                         s.hash) for s in expected[4:8]]
                    await registry.put_unit_states(
                        changed + states(5, MACHINES[:2], tag="new"), lease)
                    await registry.delete_unit_states(
                        expected[-1].machine_id, [expected[-1].name])
        assert got == expected
        now = await registry.list_unit_states()
        assert len(now) == 12 + 5 - 1 and now != expected
    finally:
        await registry.close()


async def test_stopping_early_leaves_no_read_ahead_behind(
    make_registry: Callable[[], Registry],
) -> None:
    """The next page is asked for while one is used; a reader that stops there leaves
    no request running."""
    registry = make_registry()
    try:
        lease = await registry.grant_lease(60)
        await registry.register_machine(MACHINES[0], lease)
        await registry.put_unit_states(states(9, MACHINES[:1]), lease)
        before = asyncio.all_tasks()
        async with aclosing(registry.unit_state_pages(None, 3)) as pages:
            async for _ in pages:
                assert len(asyncio.all_tasks() - before) == 1  # the next page, asked for
                break
        assert asyncio.all_tasks() - before == set()
        assert [s for p in await collect(registry.unit_state_pages(None, 3)) for s in p] == (
            await registry.list_unit_states())
    finally:
        await registry.close()


async def test_a_compaction_while_paging_says_so(make_registry: Callable[[], Registry],
                                                 request: pytest.FixtureRequest) -> None:
    registry = make_registry()
    try:
        lease = await registry.grant_lease(60)
        await registry.register_machine(MACHINES[0], lease)
        await registry.put_unit_states(states(6, MACHINES[:1]), lease)
        with pytest.raises(RegistryError, match="run it again"):
            async with aclosing(registry.unit_state_pages(None, 2)) as pages:
                async for _ in pages:
                    await registry.put_unit_states(states(1, MACHINES[:1], tag="x"), lease)
                    if isinstance(registry, MemoryRegistry):
                        registry.compact()
                    else:
                        etcd: EtcdProcess = request.getfixturevalue("etcd_server")
                        etcd.compact()
    finally:
        await registry.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="fpage", dir="/tmp"))  # unix socket paths are short
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class OldFleetd(FleetService):
    """A fleetd from before the Stream* listings (gRPC's default: UNIMPLEMENTED)."""

    async def StreamUnitStates(self, request: Any, context: Any) -> Any:  # type: ignore[override]
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")

    async def StreamMachines(self, request: Any, context: Any) -> Any:  # type: ignore[override]
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


async def test_api_streams_pages_and_falls_back_for_an_older_fleetd(
    make_registry: Callable[[], Registry], short_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = make_registry()
    lease = await registry.grant_lease(60)
    for m in MACHINES:
        await registry.register_machine(m, lease)
    await registry.put_unit_states(states(11), lease)
    server = await start_api_server(registry, [f"unix://{short_dir}/new.sock"])
    monkeypatch.setattr("fleetpy.api.server.FleetService", OldFleetd)
    old = await start_api_server(registry, [f"unix://{short_dir}/old.sock"])
    new_client = ApiDriver(f"unix://{short_dir}/new.sock")
    old_client = ApiDriver(f"unix://{short_dir}/old.sock")
    try:
        expected = await registry.list_unit_states()
        pages = await collect(new_client.unit_state_pages(None, 4))
        assert [len(p) for p in pages] == [4, 4, 3]
        assert [s for p in pages for s in p] == expected
        machine_pages = await collect(new_client.machine_pages(5))
        assert [len(p) for p in machine_pages] == [5, 2]
        assert [m for p in machine_pages for m in p] == MACHINES
        assert await collect(old_client.unit_state_pages(None, 4)) == [expected]
        assert await collect(old_client.machine_pages(5)) == [MACHINES]
    finally:
        await new_client.close()
        await old_client.close()
        await server.stop(None)
        await old.stop(None)
        await registry.close()


@pytest.mark.parametrize("driver", ["etcd", "api"])
def test_fleetctl_lists_in_pages_as_unpaged(
    driver: str, etcd_server: EtcdProcess, etcd_prefix: str, short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """list-units and list-machines with more rows than a page: the same table as the
    unpaged rows make, and read in several pages."""
    monkeypatch.setattr(listing, "PAGE", 4)
    make = lambda: EtcdRegistry(etcd_server.endpoint, etcd_prefix)  # noqa: E731
    with Cluster(machines=MACHINES, registry=make, simulate=False) as cluster:
        cluster.report(*states(30))
        api = cluster.start_api(str(short_dir / "fleet.sock")) if driver == "api" else None
        unpaged_states = cluster.states()
        machines = {m.id: m for m in cluster.run(cluster.registry.list_machines())}
        before = range_requests(cluster.registry)
        for args, fields, rows in [
            ([], lists.UNITS_DEFAULT, lists.unit_state_rows(unpaged_states, machines, False)),
            (["--full", "--fields", ",".join(lists.UNITS_FIELDS)], ",".join(lists.UNITS_FIELDS),
             lists.unit_state_rows(unpaged_states, machines, True)),
        ]:
            r = cluster.ctl("list-units", *args, api=api)
            assert r.exit_code == 0, r.output
            assert r.stdout == render(fields.split(","), rows)
            assert r.stdout.count("\n") == 31
        r = cluster.ctl("list-units", "--output", "json", api=api)
        assert r.stdout == render(lists.UNITS_DEFAULT.split(","),
                                  lists.unit_state_rows(unpaged_states, machines, True),
                                  output="json")
        r = cluster.ctl("list-machines", "--no-legend", api=api)
        assert r.exit_code == 0, r.output
        assert r.stdout == render(lists.MACHINES_DEFAULT.split(","),
                                  lists.machine_rows(MACHINES, False), legend=False)
        # 3 list-units (30 states in 8 pages, 7 machines in 2) and a list-machines (2 pages,
        # and one read of the cordons for its STATE column); both drivers read through the
        # cluster's registry (the etcd driver's is proxied)
        assert range_requests(cluster.registry) - before == 3 * (8 + 2) + 2 + 1
