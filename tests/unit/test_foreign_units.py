"""Units fleet did not write: the file store's checks, the refusal decision, the fake
adapter, the engine's exclusion of refusing machines, and agent + engine together.

The same facts on a real systemd: tests/lab/test_foreign_units.py.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from fleetpy.agent.agent import Agent
from fleetpy.agent.foreign import decide_refusals, refusal_reason, to_check
from fleetpy.api.snapshot import Snapshot
from fleetpy.ctl.lists import unit_file_rows
from fleetpy.engine.plan import plan_engine
from fleetpy.model.types import TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.systemd.fake import FakeUnitManager
from fleetpy.systemd.files import ForeignUnitError, UnitFileStore, template_of
from tests.lab.foreign_driver import check_outside_fleet, fake_run
from tests.unit.test_engine_plan import IDS, A, B, C, apply, entry, layout, machines, rec
from tests.unit.test_loops import make_cluster, until

M = "3f2a1234" + "9" * 24


# the file store ------------------------------------------------------------------------
def store(tmp_path: Path) -> UnitFileStore:
    run = tmp_path / "run/systemd/system"
    search = (tmp_path / "etc", run, tmp_path / "lib")
    for d in search:
        d.mkdir(parents=True, exist_ok=True)
    return UnitFileStore(tmp_path / "run/fleet/units", run, search_path=search)


def snapshot(path: Path) -> tuple[str, bytes | str]:
    """What a host-owned entry is: a link and its target, or a file and its bytes."""
    if path.is_symlink():
        return "link", os.readlink(path)
    return "file", path.read_bytes()


@pytest.mark.parametrize("kind", ["file", "link elsewhere", "dangling link", "link to /dev/null"])
def test_write_never_replaces_what_fleet_did_not_write(tmp_path: Path, kind: str) -> None:
    s = store(tmp_path)
    own = s.link_dir / "own.service"
    if kind == "file":
        own.write_text("[Service]\nExecStart=/bin/true\n")
    else:
        target = {"link elsewhere": str(tmp_path / "lib/own.service"),
                  "dangling link": "/nowhere/own.service", "link to /dev/null": "/dev/null"}[kind]
        (tmp_path / "lib/own.service").write_text("host's")
        own.symlink_to(target)
    before = snapshot(own)
    with pytest.raises(ForeignUnitError, match="not written by fleet"):
        s.write("own.service", "fleet's")
    assert snapshot(own) == before
    assert s.hashes() == {}  # nothing half-written
    s.remove("own.service")
    assert snapshot(own) == before


def test_remove_removes_only_fleets_link_and_file(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write("a.service", "fleet's")
    (s.link_dir / "b.service").symlink_to(s.units_dir / "a.service")  # a link, not b's own
    s.remove("b.service")
    assert (s.link_dir / "b.service").is_symlink()
    s.remove("a.service")
    assert not os.path.lexists(s.link_dir / "a.service") and s.hashes() == {}


def test_foreign_finds_units_outside_fleet_by_priority(tmp_path: Path) -> None:
    s = store(tmp_path)
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    (lib / "ssh.service").write_text("lib")
    (lib / "both.service").write_text("lib")
    (etc / "both.service").write_text("etc")
    (etc / "masked.service").symlink_to("/dev/null")
    (lib / "getty@.service").write_text("template")
    (s.link_dir / "admin.service").write_text("a host's runtime unit")
    (s.link_dir / "alias.service").symlink_to(lib / "ssh.service")
    s.write("mine.service", "fleet's")
    names = ["ssh.service", "both.service", "masked.service", "getty@tty9.service",
             "admin.service", "alias.service", "mine.service", "free.service"]
    assert s.foreign(names) == {
        "ssh.service": str(lib / "ssh.service"),
        "both.service": str(etc / "both.service"),
        "masked.service": str(etc / "masked.service"),
        "getty@tty9.service": str(lib / "getty@.service"),
        "admin.service": str(s.link_dir / "admin.service"),
        "alias.service": str(s.link_dir / "alias.service"),
    }


@pytest.mark.parametrize(("name", "template"), [
    ("a@1.service", "a@.service"), ("a@.service", None), ("a.service", None),
    ("@1.service", None), ("x@y@z.timer", "x@.timer"),
])
def test_template_of(name: str, template: str | None) -> None:
    assert template_of(name) == template


# the decision (pure) ---------------------------------------------------------------------
def test_refusal_reason_names_unit_machine_and_path() -> None:
    assert refusal_reason("ssh.service", M, "/lib/systemd/system/ssh.service") == (
        "ssh.service exists on 3f2a1234... outside fleet (/lib/systemd/system/ssh.service)"
    )


R = refusal_reason


@pytest.mark.parametrize(
    ("checked", "found", "published", "now", "changes"),
    [
        # nothing outside fleet: nothing refused, nothing written
        (["a"], {}, {}, {}, {}),
        # newly found: refused and published
        (["a", "b"], {"a": "/etc/a"}, {}, {"a": R("a", M, "/etc/a")}, {"a": R("a", M, "/etc/a")}),
        # still there: refused, no write
        (["a"], {"a": "/etc/a"}, {"a": R("a", M, "/etc/a")}, {"a": R("a", M, "/etc/a")}, {}),
        # elsewhere now: the reason changes
        (["a"], {"a": "/lib/a"}, {"a": R("a", M, "/etc/a")}, {"a": R("a", M, "/lib/a")},
         {"a": R("a", M, "/lib/a")}),
        # gone: withdrawn
        (["a"], {}, {"a": R("a", M, "/etc/a")}, {}, {"a": None}),
        # not checked this pass: kept as published
        (["b"], {}, {"a": R("a", M, "/etc/a")}, {"a": R("a", M, "/etc/a")}, {}),
    ],
)
def test_decide_refusals(
    checked: list[str], found: dict[str, str], published: dict[str, str],
    now: dict[str, str], changes: dict[str, str | None],
) -> None:
    result = decide_refusals(M, checked, found, published)
    assert (result.now, result.changes) == (now, changes)


def test_published_refusals_are_checked_again() -> None:
    assert to_check(["b.service"], {"a.service": "x"}) == ["a.service", "b.service"]


# the fake adapter ------------------------------------------------------------------------
async def test_fake_host_units_are_reported_and_never_replaced() -> None:
    f = FakeUnitManager()
    await f.start()
    f.add_host_unit("ssh.service", "/lib/systemd/system/ssh.service")
    f.add_host_unit("own.service", "/run/systemd/system/own.service")
    assert await f.outside_fleet(["ssh.service", "own.service", "free.service"]) == {
        "ssh.service": "/lib/systemd/system/ssh.service",
        "own.service": "/run/systemd/system/own.service",
    }
    with pytest.raises(ForeignUnitError):
        await f.write_unit("own.service", "x")
    await f.remove_unit("ssh.service")
    await f.daemon_reload()
    assert (await f.statuses(["ssh.service"]))["ssh.service"].active_state == "active"


# the engine's plan --------------------------------------------------------------------------
def why(unit: str, m: str) -> str:
    return refusal_reason(unit, IDS[m], f"/etc/systemd/system/{unit}")


def test_unit_goes_to_a_machine_that_does_not_refuse_it() -> None:
    u = rec("u.service")
    plan = plan_engine([u], machines("abc"), [], refused={(A, "u.service"): why("u.service", "a")})
    assert layout(apply([], plan)) == {"u.service": "b"}


def test_placed_unit_moves_off_a_refusing_machine() -> None:
    u = rec("u.service")
    refused = {(A, "u.service"): why("u.service", "a")}
    plan = plan_engine([u], machines("abc"), [entry(u, "a")], refused=refused)
    assert layout(apply([entry(u, "a")], plan)) == {"u.service": "b"}
    assert any("unscheduled u.service from a1b2c3d4" in d and "outside fleet" in d
               for d in plan.decisions)


def test_unit_every_machine_refuses_waits_with_their_reasons() -> None:
    u = rec("u.service")
    refused = {(m, "u.service"): why("u.service", k) for k, m in (("a", A), ("b", B), ("c", C))}
    plan = plan_engine([u], machines("abc"), [entry(u, "c")], refused=refused)
    assert apply([entry(u, "c")], plan) == []
    assert plan.waiting == {"u.service": "; ".join(why("u.service", k) for k in "abc")}


def test_machine_id_of_a_refusing_machine_waits_with_its_reason() -> None:
    u = rec("u.service", "MachineID=" + B)
    plan = plan_engine([u], machines("abc"), [], refused={(B, "u.service"): why("u.service", "b")})
    assert plan.puts == [] and plan.waiting == {"u.service": why("u.service", "b")}


def test_global_unit_skips_refusing_machines_and_says_why() -> None:
    g = rec("g.service", "Global=true")
    refused = {(B, "g.service"): why("g.service", "b")}
    plan = plan_engine([g], machines("abc"), [entry(g, "b")], refused=refused)
    assert layout(apply([entry(g, "b")], plan)) == {"g.service": "ac"}
    assert plan.waiting == {"g.service": why("g.service", "b")}
    # once the machine no longer refuses it, it gets the unit and the reason goes
    again = plan_engine([g], machines("abc"), apply([entry(g, "b")], plan),
                        waiting={"g.service": why("g.service", "b")})
    assert layout(apply(apply([entry(g, "b")], plan), again)) == {"g.service": "abc"}
    assert again.waiting == {"g.service": None}


def test_list_unit_files_shows_why_a_placed_global_unit_skips_machines() -> None:
    g = rec("g.service", "Global=true")
    snap = Snapshot(units={"g.service": g}, schedule=(entry(g, "a"),),
                    waiting={"g.service": why("g.service", "b")})
    (row,) = unit_file_rows(snap, full=False)
    assert (row["state"], row["target"], row["reason"]) == (None, "global", why("g.service", "b"))


def test_refusals_of_other_units_or_gone_machines_change_nothing() -> None:
    u = rec("u.service")
    refused = {(A, "other.service"): "x", ("f" * 32, "u.service"): "y"}
    assert plan_engine([u], machines("a"), [entry(u, "a")], refused=refused).puts == []


# agent and engine together (in-memory registry, fake systemd) -------------------------------
HOST_PATH = "/lib/systemd/system/ssh.service"


async def test_unit_a_machine_has_moves_and_the_host_unit_is_never_touched() -> None:
    async with make_cluster() as (store, nodes):
        host = nodes[0]
        host.manager.add_host_unit("ssh.service", HOST_PATH)
        # the engine would place it on the least loaded machine: the first, by ID
        unit = make_unit_file("ssh.service", "[Service]\nExecStart=/bin/sleep 1000\n")
        await store.create_unit(unit, TargetState.LAUNCHED)

        async def elsewhere() -> bool:
            states = await store.list_unit_states()
            return any(s.name == "ssh.service" and s.active_state == "active" for s in states)

        ok = False
        for _ in range(500):
            if ok := await elsewhere():
                break
            await asyncio.sleep(0.01)
        assert ok
        refused = await store.list_refusals()
        assert refused == {(host.machine.id, "ssh.service"): refusal_reason(
            "ssh.service", host.machine.id, HOST_PATH)}
        runs = [n for n in nodes if "ssh.service" in n.manager.loaded_files()]
        assert len(runs) == 1 and runs[0] is not host
        await store.destroy_unit("ssh.service")
        await until(lambda: not runs[0].manager.loaded_files())
        touched = [c for c in host.manager.calls if c[0] in ("write", "start", "stop", "remove")]
        assert touched == []
        assert host.manager.units["ssh.service"].active_state == "active"


async def test_every_machine_refusing_means_waiting_then_withdrawn_when_the_unit_goes() -> None:
    async with make_cluster() as (store, nodes):
        for node in nodes:
            node.manager.add_host_unit("ssh.service", HOST_PATH)
        unit = make_unit_file("ssh.service", "[Service]\nExecStart=/bin/sleep 1000\n")
        await store.create_unit(unit, TargetState.LAUNCHED)
        for _ in range(500):
            waiting = (await store.list_waiting()).get("ssh.service", "")
            if waiting.count("outside fleet") == 3:
                break
            await asyncio.sleep(0.01)
        for node in nodes:
            assert refusal_reason("ssh.service", node.machine.id, HOST_PATH) in waiting
        assert await store.list_schedule() == []
        # the host's unit goes away on one machine: that agent withdraws its refusal
        # when it next checks (here: woken by hand instead of after REFUSAL_RECHECK)
        first = nodes[0]
        del first.manager.host_units["ssh.service"]
        first.agent._wake.set()
        for _ in range(500):
            if [s.machine_id for s in await store.list_schedule()] == [first.machine.id]:
                break
            await asyncio.sleep(0.01)
        assert [s.machine_id for s in await store.list_schedule()] == [first.machine.id]
        for node in nodes[1:]:
            assert not [c for c in node.manager.calls if c[0] in ("write", "start", "stop")]


def test_outside_fleet_contract_on_the_fake() -> None:
    """The scenario tests/lab/test_foreign_units.py runs on a real systemd."""
    check_outside_fleet(fake_run("fake"), "fake")


async def test_a_restarted_agent_reads_back_its_refusals_and_withdraws_stale_ones() -> None:
    async with make_cluster() as (store, nodes):
        host = min(nodes, key=lambda n: n.machine.id)  # the engine's first pick
        host.manager.add_host_unit("ssh.service", HOST_PATH)
        unit = make_unit_file("ssh.service", "[Service]\nExecStart=/bin/sleep 1000\n")
        await store.create_unit(unit, TargetState.LAUNCHED)
        for _ in range(500):
            where = [e.machine_id for e in await store.list_schedule()]
            if await store.list_refusals() and where and host.machine.id not in where:
                break
            await asyncio.sleep(0.01)
        (placed,) = await store.list_schedule()
        assert placed.machine_id != host.machine.id
        # fleetd restarts on the host (same lease, same systemd); its unit is gone meanwhile
        await host.stop()
        del host.manager.host_units["ssh.service"]
        agent = Agent(host.registry, host.manager, host.machine.id, lambda: host.lease,
                      host.node.state_dir)
        task = asyncio.create_task(agent.run())
        try:
            for _ in range(500):
                if not await store.list_refusals():
                    break
                await asyncio.sleep(0.01)
            assert await store.list_refusals() == {}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
