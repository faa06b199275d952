"""Engine and agent loops live through poison: garbage entries, unusable names, a task
that raises. In-memory registry and fake systemd (the loop logic; the lab test
tests/lab/test_poison.py does the same to real fleetd processes).
"""

from __future__ import annotations

import logging

import pytest

from fleetpy.model.types import ScheduledUnit, TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry import codec
from fleetpy.registry.kv import Put
from fleetpy.registry.memory import MemoryRegistry
from tests.unit.test_loops import HELLO, make_cluster, until, wait_state

pytestmark = pytest.mark.timeout(20)


async def put_raw(store: MemoryRegistry, rel: str, value: bytes) -> None:
    await store.backend.txn([], [Put((store.prefix + rel).encode(), value)])


async def test_garbage_everywhere_and_a_new_unit_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with make_cluster() as (store, nodes):
        m = nodes[0].machine.id
        poison = {
            "units/garbage.service": b"not json",
            "units/a/b.service": b"{}",
            f"schedule/{m}/a/b": b"not json",
            f"schedule/{m}/.x.service": codec.encode_scheduled(
                ScheduledUnit(".x.service", m, TargetState.LAUNCHED, "h", "[Service]\n")),
            "machines/zzz": b"[]",
            f"states/{m}/x/y": b"1",
            "waiting/a/b": b"{}",
        }
        with caplog.at_level(logging.WARNING):
            for rel, value in poison.items():
                await put_raw(store, rel, value)
            unit = make_unit_file("hello.service", HELLO)
            assert await store.create_unit(unit, TargetState.LAUNCHED)
            await wait_state(store, "hello.service", ("active", "running"))
        assert all(not t.done() for n in nodes for t in n.tasks)
        assert ".x.service" not in nodes[0].manager.loaded_files()
        skipped = {u.key for u in await store.list_unreadable()}
        assert skipped == {store.prefix + rel for rel in poison}
        said = [r.getMessage() for r in caplog.records if "unreadable registry entry" in r.message]
        for rel in poison:
            assert sum(store.prefix + rel + " " in line for line in said) >= 1, rel
        # said once per key and revision, not once per pass or per reader
        assert len(said) == len(set(said)) == len(poison)


async def test_an_unusable_leader_key_is_cleared_and_an_engine_leads() -> None:
    async with make_cluster() as (store, nodes):
        await until(lambda: any(n.engine.leading for n in nodes))
        await put_raw(store, "engine/leader", b"not json")
        unit = make_unit_file("hello.service", HELLO)
        assert await store.create_unit(unit, TargetState.LAUNCHED)
        await wait_state(store, "hello.service", ("active", "running"))
        assert await store.get_leader() in {n.machine.id for n in nodes}
        assert all(not t.done() for n in nodes for t in n.tasks)


async def test_a_task_that_raises_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with make_cluster() as (store, nodes):
        for node in nodes:
            real = node.manager.write_unit

            async def write_unit(name: str, contents: str, real=real) -> None:  # type: ignore[no-untyped-def]
                if name == "bad.service":
                    raise RuntimeError("unforeseen")
                await real(name, contents)

            node.manager.write_unit = write_unit  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="fleetpy.agent"):
            for name in ("bad.service", "good.service"):
                unit = make_unit_file(name, HELLO.replace("Hello", name))
                assert await store.create_unit(unit, TargetState.LAUNCHED)
            await wait_state(store, "good.service", ("active", "running"))
            # the failure repeats every pass; it is said once
            await until(lambda: any("bad.service" in r.message for r in caplog.records))
            before = len(caplog.records)
            for node in nodes:
                node.agent._wake.set()
            await wait_state(store, "good.service", ("active", "running"))
        failures = [r for r in caplog.records if "load bad.service failed" in r.getMessage()]
        assert len(failures) == 1, [r.getMessage() for r in caplog.records]
        assert len(caplog.records) == before
        assert all(not t.done() for n in nodes for t in n.tasks)
