"""The registry contract, run on MemoryRegistry and on EtcdRegistry (real etcd)."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from fleetpy.model.types import ScheduledUnit, TargetState
from fleetpy.registry import codec
from fleetpy.registry.base import EventKind, LeaseLostError, NotLeaderError, RegistryError
from fleetpy.registry.lease import KeepaliveLease
from fleetpy.registry.store import KVRegistry
from tests.contract.conftest import Cluster
from tests.contract.helpers import (
    WAIT,
    events_until,
    machine,
    next_update,
    scheduled,
    state,
    unit,
)

TTL = 2  # etcd's shortest lease


# units ------------------------------------------------------------------------


async def test_create_get_list_destroy_units(registry: KVRegistry) -> None:
    assert await registry.list_units() == []
    assert await registry.get_unit("a.service") is None
    assert await registry.create_unit(unit("a.service"), TargetState.INACTIVE)
    assert await registry.create_unit(unit("b.service"), TargetState.LAUNCHED)
    a = await registry.get_unit("a.service")
    assert a is not None
    assert a.unit == unit("a.service")
    assert a.desired is TargetState.INACTIVE
    assert a.revision > 0
    assert [(r.unit.name, r.desired) for r in await registry.list_units()] == [
        ("a.service", TargetState.INACTIVE),
        ("b.service", TargetState.LAUNCHED),
    ]
    assert await registry.destroy_unit("a.service")
    assert not await registry.destroy_unit("a.service")
    assert [r.unit.name for r in await registry.list_units()] == ["b.service"]


async def test_create_unit_refuses_an_existing_name(registry: KVRegistry) -> None:
    assert await registry.create_unit(unit("a.service", "one"), TargetState.LOADED)
    assert not await registry.create_unit(unit("a.service", "two"), TargetState.LAUNCHED)
    record = await registry.get_unit("a.service")
    assert record is not None
    assert (record.unit.contents, record.desired) == ("one", TargetState.LOADED)


async def test_put_unit_replaces_and_bumps_revision(registry: KVRegistry) -> None:
    await registry.put_unit(unit("a.service", "one"), TargetState.LOADED)
    first = await registry.get_unit("a.service")
    await registry.put_unit(unit("a.service", "two"), TargetState.LAUNCHED)
    second = await registry.get_unit("a.service")
    assert first is not None and second is not None
    assert second.unit.contents == "two"
    assert second.desired is TargetState.LAUNCHED
    assert second.revision > first.revision


async def test_set_desired(registry: KVRegistry) -> None:
    assert not await registry.set_desired("missing.service", TargetState.LAUNCHED)
    await registry.create_unit(unit("a.service"), TargetState.INACTIVE)
    assert await registry.set_desired("a.service", TargetState.LAUNCHED)
    record = await registry.get_unit("a.service")
    assert record is not None
    assert record.desired is TargetState.LAUNCHED
    assert record.unit == unit("a.service")


async def test_invalid_names_are_refused(registry: KVRegistry) -> None:
    with pytest.raises(ValueError):
        await registry.create_unit(unit("a/b.service"), TargetState.INACTIVE)
    with pytest.raises(ValueError):
        await registry.get_unit("")


# machines, states and leases ----------------------------------------------------


async def test_register_machine_refuses_a_live_duplicate(cluster: Cluster) -> None:
    one, two = cluster.first, cluster.connect()
    lease_one, lease_two = await one.grant_lease(TTL), await two.grant_lease(TTL)
    assert await one.register_machine(machine("m1"), lease_one)
    assert not await two.register_machine(machine("m1", "10.9.9.9"), lease_two)
    assert await one.register_machine(machine("m1"), lease_one)  # again, same lease: fine
    assert await one.list_machines() == [machine("m1")]
    await one.update_machine(machine("m1", "10.0.0.2", role="web"), lease_one)
    assert await two.list_machines() == [machine("m1", "10.0.0.2", role="web")]
    with pytest.raises(RegistryError):
        await two.update_machine(machine("m1", "10.9.9.9"), lease_two)
    await lease_one.revoke()
    assert await two.register_machine(machine("m1", "10.9.9.9"), lease_two)


async def test_unit_states_are_batched_listed_and_deleted(registry: KVRegistry) -> None:
    lease = await registry.grant_lease(TTL)
    many = [state(f"u{i:03}.service", "m1") for i in range(300)]  # > 128 ops per txn
    txns = registry.backend.requests["txn"]
    await registry.put_unit_states([*many, state("x.service", "m2")], lease)
    assert registry.backend.requests["txn"] - txns == 3  # 301 puts in chunks of 128
    ranges = registry.backend.requests["range"]
    assert await registry.list_unit_states("m1") == many
    assert registry.backend.requests["range"] - ranges == 1  # one range get, whatever the size
    assert await registry.list_unit_states("m2") == [state("x.service", "m2")]
    assert len(await registry.list_unit_states()) == 301
    await registry.delete_unit_states("m1", [s.name for s in many[:200]])
    assert await registry.list_unit_states("m1") == many[200:]


async def test_refusals_are_published_withdrawn_and_bound_to_the_lease(cluster: Cluster) -> None:
    agent, engine = cluster.first, cluster.connect()
    lease = await agent.grant_lease(TTL)
    await agent.put_refusals("m1", {"ssh.service": "ssh.service exists on m1", "a.service": "x"},
                             lease)
    await agent.put_refusals("m2", {"ssh.service": "ssh.service exists on m2"}, lease)
    assert await engine.list_refusals() == {
        ("m1", "a.service"): "x",
        ("m1", "ssh.service"): "ssh.service exists on m1",
        ("m2", "ssh.service"): "ssh.service exists on m2",
    }
    await agent.put_refusals("m1", {"a.service": None}, lease)  # withdrawn
    assert await engine.list_refusals("m1") == {("m1", "ssh.service"): "ssh.service exists on m1"}
    async with aclosing(engine.watch("refused/")) as watch:
        assert len((await next_update(watch)).items) == 2
        await cluster.kill_holder(lease)
        await events_until(watch, 2, timeout=TTL + WAIT)
    assert await engine.list_refusals() == {}


async def test_machine_and_states_vanish_together_when_the_agent_dies(cluster: Cluster) -> None:
    agent, observer = cluster.first, cluster.connect()
    lease = await agent.grant_lease(TTL)
    await agent.register_machine(machine("m1"), lease)
    await agent.put_unit_states([state("a.service", "m1"), state("b.service", "m1")], lease)
    async with aclosing(observer.watch("")) as watch:
        reset = await next_update(watch)
        assert set(reset.items) == {"machines/m1", "states/m1/a.service", "states/m1/b.service"}
        await cluster.kill_holder(lease)
        (update,) = await events_until(watch, 3, timeout=TTL + WAIT)
    assert {(e.kind, e.key) for e in update.events} == {
        (EventKind.DELETE, "machines/m1"),
        (EventKind.DELETE, "states/m1/a.service"),
        (EventKind.DELETE, "states/m1/b.service"),
    }
    assert len({e.revision for e in update.events}) == 1  # one revision: together
    assert await observer.list_machines() == []
    assert await observer.list_unit_states() == []
    async with asyncio.timeout(WAIT):
        await lease.wait_lost()


async def test_a_lease_expires_after_its_ttl_once_refreshes_stop(cluster: Cluster) -> None:
    agent, observer = cluster.first, cluster.connect()
    lease = await agent.grant_lease(TTL)
    assert isinstance(lease, KeepaliveLease)
    await agent.register_machine(machine("m1"), lease)
    async with aclosing(observer.watch("machines/")) as watch:
        await next_update(watch)
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        await lease.stop_keepalive()  # the agent hangs or dies: no more refreshes
        update = await next_update(watch, timeout=TTL + WAIT)
    assert [(e.kind, e.key) for e in update.events] == [(EventKind.DELETE, "machines/m1")]
    assert loop.time() - stopped > TTL / 3  # expired by time, not at once
    assert await observer.list_machines() == []


async def test_a_revoked_lease_is_reported_lost_to_its_holder(cluster: Cluster) -> None:
    agent, other = cluster.first, cluster.connect()
    lease = await agent.grant_lease(TTL)
    await agent.register_machine(machine("m1"), lease)
    assert lease.is_alive()
    await other.backend.lease_revoke(lease.id)  # e.g. an operator, or expiry
    async with asyncio.timeout(TTL):  # learnt at the next refresh (ttl/3)
        await lease.wait_lost()
    assert not lease.is_alive()
    with pytest.raises(LeaseLostError):
        await agent.put_unit_states([state("a.service", "m1")], lease)
    assert await other.list_unit_states() == []


async def test_adopt_lease(cluster: Cluster) -> None:
    old, new = cluster.first, cluster.connect()
    lease = await old.grant_lease(TTL)
    await old.register_machine(machine("m1"), lease)
    await old.close()  # fleetd stops without revoking; a new one adopts the lease
    adopted = await new.adopt_lease(lease.id, TTL)
    assert adopted is not None and adopted.id == lease.id
    assert await new.register_machine(machine("m1"), adopted)
    await adopted.revoke()
    assert await new.adopt_lease(lease.id, TTL) is None
    assert await new.list_machines() == []


# leadership and schedule -------------------------------------------------------


async def test_campaign_gives_the_lead_to_one_engine(cluster: Cluster) -> None:
    one, two = cluster.first, cluster.connect()
    lease_one, lease_two = await one.grant_lease(TTL), await two.grant_lease(TTL)
    assert await one.get_leader() is None
    token = await one.campaign("m1", lease_one)
    assert token is not None and token.machine_id == "m1" and token.lease_id == lease_one.id
    assert await two.campaign("m2", lease_two) is None
    assert await one.campaign("m1", lease_one) == token  # asking again: same token
    assert await two.get_leader() == "m1"
    await one.resign(token)
    assert await two.get_leader() is None
    token_two = await two.campaign("m2", lease_two)
    assert token_two is not None
    await one.resign(token)  # resigning a lost lead does nothing
    assert await one.get_leader() == "m2"


async def test_apply_schedule_writes_atomically(registry: KVRegistry) -> None:
    lease = await registry.grant_lease(TTL)
    token = await registry.campaign("m1", lease)
    assert token is not None
    a, b = scheduled("a.service", "m1"), scheduled("b.service", "m2", TargetState.LOADED)
    await registry.apply_schedule(token, [a, b], [], {"c.service": "no machine has role=db"})
    assert await registry.list_schedule() == [a, b]
    assert await registry.list_schedule("m2") == [b]
    assert await registry.list_waiting() == {"c.service": "no machine has role=db"}
    await registry.apply_schedule(token, [], [("m1", "a.service")], {"c.service": None})
    assert await registry.list_schedule() == [b]
    assert await registry.list_waiting() == {}
    many = [scheduled(f"u{i:03}.service", "m3") for i in range(200)]  # > 128 ops
    await registry.apply_schedule(token, many, [])
    assert await registry.list_schedule("m3") == many


async def test_units_moved_in_many_transactions_are_never_scheduled_twice(
    registry: KVRegistry,
) -> None:
    lease = await registry.grant_lease(TTL)
    token = await registry.campaign("m1", lease)
    assert token is not None
    names = [f"u{i:03}.service" for i in range(300)]  # 600 operations: several transactions
    await registry.apply_schedule(token, [scheduled(n, "m1") for n in names], [])
    async with aclosing(registry.watch("schedule/")) as watch:
        first = await next_update(watch)
        assert len(first.items) == 300
        await registry.apply_schedule(
            token, [scheduled(n, "m2") for n in names], [("m1", n) for n in names])
        where = {n: {"m1"} for n in names}
        seen = 0
        while seen < 600:
            update = await next_update(watch)
            for event in update.events:  # in revision order
                _, machine, name = event.key.split("/")
                if event.kind == EventKind.DELETE:
                    where[name].discard(machine)
                else:
                    where[name].add(machine)
                assert len(where[name]) <= 1, (name, where[name])
                seen += 1
    assert all(w == {"m2"} for w in where.values())


async def test_apply_schedule_of_big_units_stays_within_etcd_request_limit(
    registry: KVRegistry,
) -> None:
    """200 entries of a 16 KiB unit are 3.2 MiB: more than etcd's 1.5 MiB per request."""
    lease = await registry.grant_lease(TTL)
    token = await registry.campaign("m1", lease)
    assert token is not None
    contents = "[Service]\nExecStart=/bin/true\n# " + "x" * 16 * 1024 + "\n"
    big = [ScheduledUnit(f"u{i:03}.service", "m1", TargetState.LAUNCHED, "h1", contents)
           for i in range(200)]
    await registry.apply_schedule(token, big, [])
    assert await registry.list_schedule("m1") == big


async def test_a_deposed_leader_writes_nothing(cluster: Cluster) -> None:
    one, two = cluster.first, cluster.connect()
    lease_one = await one.grant_lease(TTL)
    stale = await one.campaign("m1", lease_one)
    assert stale is not None
    await one.apply_schedule(stale, [scheduled("a.service", "m1")], [])
    await lease_one.revoke()  # the lead is lost; the same machine wins it again
    lease_again = await one.grant_lease(TTL)
    fresh = await one.campaign("m1", lease_again)
    assert fresh is not None and fresh.create_revision != stale.create_revision
    before = await two.list_schedule()
    with pytest.raises(NotLeaderError):
        await one.apply_schedule(
            stale, [scheduled("b.service", "m1")], [("m1", "a.service")], {"c.service": "x"}
        )
    with pytest.raises(NotLeaderError):
        await one.apply_schedule(stale, [], [])  # an empty write checks the lead too
    assert await two.list_schedule() == before
    assert await two.list_waiting() == {}
    await one.apply_schedule(fresh, [scheduled("b.service", "m1")], [])
    assert [s.name for s in await two.list_schedule()] == ["a.service", "b.service"]


# watches --------------------------------------------------------------------------


async def test_watch_starts_with_a_reset_then_yields_events_in_order(cluster: Cluster) -> None:
    agent, engine = cluster.first, cluster.connect()
    token = await engine.campaign("e", await engine.grant_lease(TTL))
    assert token is not None
    await engine.apply_schedule(token, [scheduled("a.service", "m1")], [])
    await engine.apply_schedule(token, [scheduled("z.service", "m2")], [])
    async with aclosing(agent.watch(codec.schedule_prefix("m1"))) as watch:
        reset = await next_update(watch)
        assert reset.reset and not reset.events
        assert list(reset.items) == ["schedule/m1/a.service"]
        entry = codec.decode_scheduled(
            "schedule/m1/a.service", reset.items["schedule/m1/a.service"]
        )
        assert entry == scheduled("a.service", "m1")
        await engine.apply_schedule(token, [scheduled("b.service", "m2")], [])  # not m1's
        for i in range(5):
            await engine.apply_schedule(token, [scheduled(f"u{i}.service", "m1")], [])
        await engine.apply_schedule(token, [], [("m1", "a.service")])
        updates = await events_until(watch, 6)
    assert not any(u.reset for u in updates)
    events = [e for u in updates for e in u.events]
    assert [(e.kind, e.key) for e in events] == [
        *[(EventKind.PUT, f"schedule/m1/u{i}.service") for i in range(5)],
        (EventKind.DELETE, "schedule/m1/a.service"),
    ]
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == 6
    assert all(e.revision > reset.revision for e in events)
    assert updates[-1].revision == revisions[-1]


async def test_an_idle_agent_costs_one_keepalive_per_third_of_ttl(registry: KVRegistry) -> None:
    lease = await registry.grant_lease(3)  # refresh every 1 s
    await registry.register_machine(machine("m1"), lease)
    requests = registry.backend.requests
    async with aclosing(registry.watch(codec.schedule_prefix("m1"))) as watch:
        await next_update(watch)
        before = dict(requests)
        await asyncio.sleep(3.2)  # the idle time being measured, not a synchronisation
        spent = {k: v - before.get(k, 0) for k, v in requests.items() if v != before.get(k, 0)}
    assert set(spent) == {"lease_keepalive"}  # watches are streams: no requests
    assert 2 <= spent["lease_keepalive"] <= 4
    assert lease.is_alive()  # longer than its ttl: the refreshes kept it
    assert await registry.list_machines() == [machine("m1")]
