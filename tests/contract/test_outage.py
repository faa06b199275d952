"""etcd outages: calls fail with RegistryError, watches resume, leases survive.

On etcd the outage is a real stop and restart of the test's own etcd (same
data, same port); in memory it is ``set_available(False)``.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from functools import partial

import pytest

from fleetpy.model.types import TargetState
from fleetpy.registry.base import EventKind, RegistryError
from tests.contract.conftest import Cluster
from tests.contract.helpers import WAIT, Collector, machine, next_update, unit, until_ok


async def test_calls_raise_registry_error_while_etcd_is_down(own_cluster: Cluster) -> None:
    registry = own_cluster.first
    lease = await registry.grant_lease(5)
    await own_cluster.down()
    endpoint = own_cluster.etcd.endpoint if own_cluster.etcd else "memory://"
    with pytest.raises(RegistryError, match=rf"^cannot reach etcd \(tried {endpoint}\): "):
        await registry.list_units()
    calls = [
        registry.get_unit("a.service"),
        registry.create_unit(unit("a.service"), TargetState.LAUNCHED),
        registry.register_machine(machine("m1"), lease),
        registry.list_schedule("m1"),
        registry.campaign("m1", lease),
        registry.grant_lease(5),
    ]
    for call in calls:
        with pytest.raises(RegistryError):
            await call
    assert lease.is_alive()  # unreachable is not expired
    await own_cluster.up()
    assert await until_ok(partial(registry.create_unit, unit("a.service"), TargetState.LAUNCHED))
    assert await until_ok(partial(registry.register_machine, machine("m1"), lease))


async def test_watch_resumes_after_an_outage_without_losing_events(
    own_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetpy.registry")
    agent, writer = own_cluster.first, own_cluster.connect()
    collector = Collector(agent.watch("units/"))
    names = [f"{batch}{i}.service" for batch in "abc" for i in range(5)]
    try:
        await collector.wait_updates(1)  # the initial listing
        for name in names[:5]:
            await writer.put_unit(unit(name), TargetState.LAUNCHED)
        await collector.wait_events(5)
        await own_cluster.down()
        await own_cluster.up()
        for name in names[5:]:  # written while the watcher is still reconnecting
            await until_ok(partial(writer.put_unit, unit(name), TargetState.LAUNCHED))
        events = await collector.wait_events(len(names), timeout=3 * WAIT)
    finally:
        await collector.stop()
    assert [(e.kind, e.key) for e in events] == [(EventKind.PUT, f"units/{n}") for n in names]
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions))  # in order, no duplicates
    assert [u.reset for u in collector.updates].count(True) == 1  # only the first listing
    assert "resuming from revision" in caplog.text  # the stream did break and resume


async def test_watch_relists_when_its_revision_was_compacted_meanwhile(
    own_cluster: Cluster,
) -> None:
    agent, writer = own_cluster.first, own_cluster.connect()
    await writer.put_unit(unit("k0.service"), TargetState.LAUNCHED)
    async with aclosing(agent.watch("units/")) as watch:
        first = await next_update(watch)
        assert first.reset and list(first.items) == ["units/k0.service"]
        await writer.put_unit(unit("k1.service"), TargetState.LAUNCHED)
        assert [e.key for e in (await next_update(watch)).events] == ["units/k1.service"]
        # The watcher is cut off; meanwhile keys change and etcd compacts its history.
        await own_cluster.down()
        await own_cluster.up()
        await until_ok(partial(writer.destroy_unit, "k0.service"))
        await writer.put_unit(unit("k1.service", "changed"), TargetState.LOADED)
        await writer.put_unit(unit("k2.service"), TargetState.LAUNCHED)
        compacted = own_cluster.compact()
        relisted = await next_update(watch, timeout=3 * WAIT)
        assert relisted.reset
        assert relisted.revision >= compacted
        assert sorted(relisted.items) == ["units/k1.service", "units/k2.service"]
        record = await writer.get_unit("k1.service")
        assert record is not None and record.unit.contents == "changed"
        await writer.put_unit(unit("k3.service"), TargetState.LAUNCHED)
        after = await next_update(watch)
    assert not after.reset
    assert [(e.kind, e.key) for e in after.events] == [(EventKind.PUT, "units/k3.service")]


async def test_a_quiet_watch_resumes_after_a_compaction_without_relisting(
    own_cluster: Cluster,
) -> None:
    agent, writer = own_cluster.first, own_cluster.connect()
    lease = await writer.grant_lease(5)
    collector = Collector(agent.watch("units/"))
    try:
        (listed,) = await collector.wait_updates(1)
        for i in range(5):  # elsewhere: the store moves on, this watch sees nothing
            await writer.register_machine(machine(f"m{i}"), lease)
        await own_cluster.progress()  # ...but learns how far it is up to date
        await own_cluster.down()
        await own_cluster.up()
        compacted = await until_ok(partial(asyncio.to_thread, own_cluster.compact))
        assert compacted > listed.revision + 1  # the listing's revision is gone
        await until_ok(partial(writer.put_unit, unit("k1.service"), TargetState.LAUNCHED))
        updates = await collector.wait_updates(2, timeout=3 * WAIT)
    finally:
        await collector.stop()
    assert [u.reset for u in updates] == [True, False]
    assert [(e.kind, e.key) for e in updates[1].events] == [(EventKind.PUT, "units/k1.service")]


async def test_a_lease_survives_an_outage_shorter_than_its_ttl(own_cluster: Cluster) -> None:
    registry = own_cluster.first
    lease = await registry.grant_lease(2)
    await registry.register_machine(machine("m1"), lease)
    await own_cluster.down()
    await asyncio.sleep(0.8)  # the outage itself: refreshes fail meanwhile
    assert lease.is_alive()
    await own_cluster.up()
    assert await until_ok(registry.list_machines) == [machine("m1")]
    await asyncio.sleep(lease.ttl + 0.5)  # longer than a ttl: only resumed refreshes keep it
    assert lease.is_alive()
    assert await registry.list_machines() == [machine("m1")]


async def test_an_outage_leaves_no_stray_tasks_behind(
    own_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A lease kept alive and a watch open while etcd stops and starts again: asyncio
    says nothing (the bench saw "Task was destroyed but it is pending!" from the
    request iterators gRPC consumed, hundreds of lines per outage)."""
    import gc

    caplog.set_level(logging.ERROR, logger="asyncio")
    registry = own_cluster.first
    lease = await registry.grant_lease(5)
    collector = Collector(registry.watch("units/"))
    try:
        await collector.wait_updates(1)
        for _ in range(2):  # the second outage drops the first one's broken streams
            await own_cluster.down()
            failures = lease.keepalive_failures
            async with asyncio.timeout(3 * WAIT):
                while lease.keepalive_failures < failures + 2:  # refreshes failed meanwhile
                    await asyncio.sleep(0.05)
            await own_cluster.up()
            assert await until_ok(partial(registry.create_unit, unit(f"x{_}.service"),
                                          TargetState.LAUNCHED))
            await collector.wait_events(_ + 1, timeout=3 * WAIT)
            gc.collect()  # a task dropped pending is said when it is collected
            await asyncio.sleep(0.1)
    finally:
        await collector.stop()
    assert lease.is_alive()
    said = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert said == [], said[:3]
