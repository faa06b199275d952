"""The agent's executor on fake systemd: fleet's record, refused stops, settling starts.

Fast checks of the executor's bookkeeping (the lab module
tests/lab/test_agent_state.py checks the same against a real systemd).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetpy.agent.agent import Agent
from fleetpy.agent.record import RECORD_FILE
from fleetpy.agent.settle import SETTLE_S
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitState
from fleetpy.registry.base import LeaderToken, Lease
from fleetpy.registry.memory import MemoryRegistry
from fleetpy.systemd.base import UnitStatus, content_hash
from fleetpy.systemd.fake import FakeUnitManager

pytestmark = pytest.mark.timeout(30)

MID = "a" * 32
LOADED, LAUNCHED = TargetState.LOADED, TargetState.LAUNCHED
SLEEP = "[Service]\nExecStart=/bin/sleep infinity\n"
REFUSED = "Operation refused, unit r.service may be requested by dependency only"


@dataclass
class Node:
    registry: MemoryRegistry
    manager: FakeUnitManager
    lease: Lease
    token: LeaderToken
    state_dir: Path
    agent: Agent | None = None
    task: asyncio.Task[None] | None = None
    reports: list[UnitState] = field(default_factory=list)

    async def run_agent(self) -> None:
        self.agent = Agent(self.registry, self.manager, MID, lambda: self.lease, self.state_dir)
        self.task = asyncio.create_task(self.agent.run())

    async def stop_agent(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def schedule(self, name: str, target: TargetState, contents: str = SLEEP) -> None:
        entry = ScheduledUnit(name, MID, target, content_hash(contents), contents)
        await self.registry.apply_schedule(self.token, [entry], [])

    async def unschedule(self, name: str) -> None:
        await self.registry.apply_schedule(self.token, [], [(MID, name)])

    async def state(self, name: str) -> UnitState | None:
        return next((s for s in await self.registry.list_unit_states() if s.name == name), None)

    async def until(self, check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    async def until_state(self, name: str, check: Callable[[UnitState | None], bool],
                          timeout: float = 5.0) -> UnitState | None:
        last: list[UnitState | None] = [None]
        async with asyncio.timeout(timeout):
            while True:
                last[0] = await self.state(name)
                if check(last[0]):
                    return last[0]
                await asyncio.sleep(0.01)

    def calls(self, op: str, name: str | None = None) -> int:
        return sum(1 for c in self.manager.calls if c[0] == op and (name is None or name in c))


@contextlib.asynccontextmanager
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    registry = MemoryRegistry()
    lease = await registry.grant_lease(30)
    await registry.register_machine(Machine(MID, "10.0.0.1"), lease)
    token = await registry.campaign(MID, lease)
    assert token is not None
    manager = FakeUnitManager()
    await manager.start()
    n = Node(registry, manager, lease, token, tmp_path)
    put = registry.put_unit_states

    async def record(states: list[UnitState], lease: Lease) -> None:
        n.reports.extend(states)
        await put(states, lease)

    registry.put_unit_states = record  # type: ignore[method-assign]
    await n.run_agent()
    try:
        yield n
    finally:
        await n.stop_agent()


def launched(s: UnitState | None) -> bool:
    return s is not None and s.fleet == "launched" and s.active_state == "active"


async def test_loaded_unit_started_by_systemd_is_not_stopped(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        await n.schedule("db.service", LOADED)
        await n.until_state("db.service", lambda s: s is not None and s.fleet == "loaded")
        n.manager.set_state("db.service", "active", "running")  # Requires= of app.service
        await n.schedule("app.service", LAUNCHED)  # a reconcile pass after the change
        await n.until_state("app.service", launched)
        db = await n.until_state("db.service", lambda s: s is not None and s.active_state
                                 == "active")
        assert db is not None and db.fleet == "loaded"
        assert n.calls("stop") == 0
        # fleet's own stop of what it launched still happens
        await n.schedule("app.service", LOADED)
        await n.until_state("app.service", lambda s: s is not None and s.fleet == "loaded"
                            and s.active_state == "inactive")
        assert n.calls("stop", "db.service") == 0


async def test_restarted_agent_leaves_units_alone(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        await n.schedule("a.service", LAUNCHED)
        await n.schedule("f.service", LAUNCHED)
        await n.schedule("db.service", LOADED)
        await n.until_state("a.service", launched)
        await n.until_state("f.service", launched)
        n.manager.set_state("db.service", "active", "running")  # started by systemd
        n.manager.set_state("f.service", "failed", "failed")  # failed after fleet's start
        await n.until(lambda: (tmp_path / RECORD_FILE).exists(), "the record file")
        await n.stop_agent()

        async def restart() -> list[tuple[str, ...]]:
            before = len(n.manager.calls)
            await n.run_agent()
            assert n.agent is not None
            await asyncio.wait_for(n.agent.converged.wait(), 5)
            await n.stop_agent()
            return [c for c in n.manager.calls[before:] if c[0] in ("start", "stop", "reload")]

        assert await restart() == []  # with fleet's record: nothing at all
        # without a record (e.g. the first fleetd of this version) units are adopted as they
        # are: nothing healthy is stopped or started; fleet cannot tell it launched f.service
        (tmp_path / RECORD_FILE).unlink()
        assert await restart() == [("start", "f.service")]


async def test_refused_stop_keeps_the_unit_visible_and_backs_off(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        await n.schedule("r.service", LAUNCHED)
        await n.until_state("r.service", launched)
        reloads = n.calls("reload")
        n.manager.errors["stop"] = REFUSED
        await n.schedule("r.service", LOADED)
        s = await n.until_state("r.service", lambda s: s is not None and bool(s.error))
        assert s is not None and s.error == f"stop: {REFUSED}"
        assert (s.fleet, s.active_state) == ("launched", "active")
        await n.unschedule("r.service")  # destroy
        s = await n.until_state("r.service", lambda s: s is not None
                                and s.error.startswith("unload:"))
        assert s is not None and s.active_state == "active"
        assert "r.service" in n.manager.files
        stops = n.calls("stop")
        await asyncio.sleep(2.5)  # back-off: tries at about +1 s and +3 s, not every pass
        assert n.calls("stop") - stops <= 2
        assert n.calls("reload") == reloads  # no daemon-reload while nothing changed
        assert await n.state("r.service") is not None
        # the process ends (killed): the stop is still refused, but the unit is down, so
        # the next try removes it, reloads once and forgets its state
        n.manager.set_state("r.service", "failed", "failed")
        await n.until_state("r.service", lambda s: s is None, timeout=8)
        assert "r.service" not in n.manager.files and n.calls("reload") == reloads + 1


async def test_refused_stop_of_a_unit_that_went_down_counts_as_stopped(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        await n.schedule("r.service", LAUNCHED)
        await n.until_state("r.service", launched)
        n.manager.errors["stop"] = REFUSED
        await n.schedule("r.service", LOADED)
        await n.until_state("r.service", lambda s: s is not None and bool(s.error))
        n.manager.set_state("r.service", "failed", "failed")  # its process was killed
        s = await n.until_state("r.service", lambda s: s is not None and s.fleet == "loaded")
        assert s is not None and s.error == ""


class FailingAtOnce(FakeUnitManager):
    """/bin/false as Type=simple: active/running after the start, failed right after."""

    fails_after = 0.01  # s after the start

    async def start_unit(self, name: str) -> None:
        await super().start_unit(name)
        asyncio.get_running_loop().call_later(self.fails_after, self.set_state, name, "failed",
                                              "failed")


async def test_a_start_that_fails_at_once_is_never_reported_launched_and_running(
    tmp_path: Path,
) -> None:
    async with node(tmp_path) as n:
        n.manager.__class__ = FailingAtOnce
        await n.schedule("false.service", LAUNCHED)
        s = await n.until_state("false.service", lambda s: s is not None and s.fleet
                                == "launched")
        assert s is not None and s.active_state == "failed"
        assert not [r for r in n.reports if r.fleet == "launched" and r.active_state == "active"]
        assert any(r.fleet == "starting" for r in n.reports)


FAILS_AFTER = 0.08  # s after it went up: within SETTLE_S


class FailingSoon(FailingAtOnce):
    """A unit that fails a moment after it went up, within the settle time."""

    fails_after = FAILS_AFTER


async def test_a_start_that_fails_within_the_settle_time_is_reported_failed(
    tmp_path: Path,
) -> None:
    assert FAILS_AFTER < SETTLE_S
    async with node(tmp_path) as n:
        n.manager.__class__ = FailingSoon
        await n.schedule("soon.service", LAUNCHED)
        s = await n.until_state("soon.service", lambda s: s is not None and s.fleet
                                == "launched")
        assert s is not None and s.active_state == "failed"
        assert not [r for r in n.reports if r.fleet == "launched" and r.active_state == "active"]


class QueuedStart(FakeUnitManager):
    """A start whose job waits 0.6 s (After= a unit still starting): inactive/dead
    until then, as systemd shows a unit with a queued start job."""

    async def start_unit(self, name: str) -> None:
        await super().start_unit(name)
        self._set(name, "loaded", "inactive", "dead")
        asyncio.get_running_loop().call_later(0.6, self.set_state, name, "active", "running")


async def test_a_start_whose_job_waits_is_not_reported_finished(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        n.manager.__class__ = QueuedStart
        await n.schedule("app.service", LAUNCHED)
        await n.until_state("app.service", launched)
        # never "launched" while still inactive (fleetctl start would say "finished")
        assert not [r for r in n.reports if r.fleet == "launched" and r.active_state != "active"]


async def test_a_start_settles_after_the_settle_time(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await n.schedule("a.service", LAUNCHED)
        await n.until_state("a.service", launched)
        assert loop.time() - t0 >= SETTLE_S


async def test_a_state_is_written_again_only_when_it_changed(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        for i in range(5):
            await n.schedule(f"u{i}.service", LAUNCHED)
        for i in range(5):
            await n.until_state(f"u{i}.service", launched)
        assert n.agent is not None
        written = len(n.reports)
        # what a reconcile pass does for the units it touched: report them now
        await n.agent._report_now(["u0.service", "u1.service"])
        await n.agent._report_now(["u0.service"])
        # then a change: its report comes after those (one report loop, in order), so
        # by the time it is written, unchanged states written again would be there too
        n.manager.set_state("u0.service", "failed", "failed")
        await n.until_state("u0.service", lambda s: s is not None and s.active_state == "failed")
        assert [(s.name, s.active_state) for s in n.reports[written:]] == [
            ("u0.service", "failed")]  # unchanged ones: nothing written again


async def test_a_unit_systemd_cannot_load_is_not_loaded_again_in_a_loop(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        n.manager.unloadable.add("bad.service")
        await n.schedule("bad.service", LAUNCHED, "[Service]\n")
        bad = await n.until_state("bad.service", lambda s: s is not None and "cannot load"
                                  in s.error)
        assert bad is not None and bad.load_state == "bad-setting"
        assert "load state bad-setting" in bad.error
        reloads = n.calls("reload")
        await n.schedule("good.service", LAUNCHED)  # other work goes on meanwhile
        await n.until_state("good.service", launched)
        await asyncio.sleep(1.5)  # past any back-off: still no new attempt at bad.service
        # no reload for bad.service again; good.service is new to systemd: none for it
        assert n.calls("reload") == reloads
        assert n.calls("start", "bad.service") == 0
        assert n.calls("write", "bad.service") == 1
        # a new version of the unit is tried at once
        n.manager.unloadable.discard("bad.service")
        await n.schedule("bad.service", LAUNCHED, "[Service]\nExecStart=/bin/true\n")
        await n.until_state("bad.service", lambda s: s is not None and s.error == ""
                            and s.load_state == "loaded")


async def test_a_new_unit_starts_without_a_daemon_reload(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        await n.schedule("new.service", LAUNCHED)
        await n.until_state("new.service", launched)
        assert n.calls("reload") == 0 and n.calls("start", "new.service") == 1


async def test_a_unit_systemd_has_loaded_gets_its_reload(tmp_path: Path) -> None:
    """systemd still has x.service loaded (its file went without a reload, say fleetd
    died in between): a new file of that name needs the reload, or systemd runs the
    old contents."""
    async with node(tmp_path) as n:
        await n.schedule("x.service", LAUNCHED)
        await n.until_state("x.service", launched)
        await n.stop_agent()
        n.manager.set_state("x.service", "inactive", "dead")
        del n.manager.files["x.service"]
        n.manager.links.discard("x.service")
        new = "[Service]\nExecStart=/bin/sleep 1000\n"
        await n.schedule("x.service", LAUNCHED, new)
        reloads = n.calls("reload")
        await n.run_agent()
        await n.until_state("x.service", lambda s: launched(s) and s.hash == content_hash(new))
        assert n.calls("reload") == reloads + 1
        assert n.manager.loaded["x.service"] == new


class StaleUnitCache(FakeUnitManager):
    """systemd that did not see the unit directory change (a directory timestamp too
    coarse to differ): a unit it does not have in memory stays not-found until a
    daemon-reload."""

    def _lookup(self, name: str) -> UnitStatus:
        if name in self.units:
            return self.units[name]
        return UnitStatus(name, "not-found", "inactive", "dead")

    async def daemon_reload(self) -> None:
        await super().daemon_reload()
        for name in self.links:
            if name not in self.units:
                self.loaded[name] = self.files[name]
                self.units[name] = UnitStatus(name, "loaded", "inactive", "dead")


async def test_a_new_unit_systemd_does_not_find_gets_the_reload_after_all(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "fleetpy.agent")
    async with node(tmp_path) as n:
        n.manager.__class__ = StaleUnitCache
        await n.schedule("new.service", LAUNCHED)
        await n.until_state("new.service", launched)
        assert n.calls("reload") == 1 and n.calls("start", "new.service") == 1
        assert "daemon-reload after all: systemd does not find new.service" in caplog.text
