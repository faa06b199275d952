"""Drains carried on by the engine (fleetpy.engine.drainer): the pace from the cordon
record, the deadline, a new leader resuming, the few states read, one log line per
decision. The engine and the agents are simulated with the pure planner
(fleetpy.engine.plan) on a MemoryRegistry: unit tests of the logic, not of etcd
(tests/contract/test_cordon_contract.py holds the registry calls against etcd)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from fleetpy.engine.drain import deadline_passed, plan_drain, states_needed
from fleetpy.engine.drainer import Drainer, DrainView
from fleetpy.engine.plan import plan_engine
from fleetpy.model.cordon import Cordon, MachineState
from fleetpy.model.types import ScheduledUnit, UnitState
from fleetpy.registry.base import LeaderToken
from fleetpy.registry.codec import CodecError, decode_cordon, encode_cordon
from fleetpy.registry.memory import MemoryRegistry
from tests.unit.test_engine_plan import A, B, C, machines, rec

DRAINING = MachineState.DRAINING
KEY = f"cordoned/{A}"


def test_old_cordon_records_read_with_a_pace_of_one_and_no_deadline() -> None:
    old = b'{"state":"draining","by":"core@h","at":"","reason":"","move":["a.service"],' \
          b'"stop":[],"stop_global":false}'
    assert decode_cordon(KEY, old) == Cordon(A, DRAINING, by="core@h", move=("a.service",))
    drain = Cordon(A, DRAINING, max_parallel=3, deadline=1_796_245_200.5)
    assert decode_cordon(KEY, encode_cordon(drain)) == drain
    for bad in (b'"max_parallel":0', b'"max_parallel":"2"', b'"deadline":"soon"',
                b'"deadline":true'):
        with pytest.raises(CodecError):
            decode_cordon(KEY, b'{"state":"draining",' + bad + b"}")


def test_deadline_is_the_records_absolute_time_against_now() -> None:
    assert not deadline_passed(Cordon(A, DRAINING), 1e12)
    timed = Cordon(A, DRAINING, deadline=1000.0)
    assert not deadline_passed(timed, 999.9)
    assert deadline_passed(timed, 1000.0) and deadline_passed(timed, 5000.0)


class Sim:
    """A cluster of machines a (drained), b, c: the engine is the pure planner, each
    agent stops a unit no longer scheduled on it at once and reports a unit newly
    scheduled on it active ``delay`` rounds later. The drainer under test runs on the
    MemoryRegistry the simulation keeps its cordon and states in."""

    def __init__(self, registry: MemoryRegistry, units: int, xfleet: str = "",
                 delay: int = 1) -> None:
        self.registry = registry
        self.delay = delay
        self.starting: dict[tuple[str, str], int] = {}  # scheduled here, rounds to go
        self.units = [rec(f"web@{i}.service", xfleet) for i in range(1, units + 1)]
        self.schedule: dict[tuple[str, str], ScheduledUnit] = {
            (A, r.unit.name): ScheduledUnit(r.unit.name, A, r.desired, r.unit.hash,
                                            r.unit.contents) for r in self.units}
        self.states: dict[tuple[str, str], UnitState] = {}
        self.cordons: dict[str, Cordon] = {}
        self.waiting: dict[str, str] = {}
        self.lease = None
        self.least_running = len(self.units)

    def view(self) -> DrainView:
        return DrainView(self.cordons, self.schedule, self.waiting)

    def running(self) -> int:
        return sum(1 for key, e in self.schedule.items() if key in self.states
                   and self.states[key].active_state == "active")

    async def start(self) -> LeaderToken:
        self.lease = await self.registry.grant_lease(60)
        for key, e in self.schedule.items():
            self.states[key] = UnitState(e.name, e.machine_id, "loaded", "active", "running",
                                         e.hash)
        await self.registry.put_unit_states(list(self.states.values()), self.lease)
        token = await self.registry.campaign(A, self.lease)
        assert token is not None
        return token

    async def round(self) -> None:
        """The watch delivers the cordon, the engine plans, the agents act."""
        self.cordons = await self.registry.list_cordons()
        plan = plan_engine(self.units, machines("abc"), list(self.schedule.values()),
                           waiting=self.waiting, cordons=self.cordons)
        for machine_id, name in plan.deletes:
            self.schedule.pop((machine_id, name))
        for e in plan.puts:
            self.schedule[(e.machine_id, e.name)] = e
        self.waiting = {n: r for n, r in {**self.waiting, **plan.waiting}.items() if r}
        gone = [k for k in self.states if k not in self.schedule]
        for machine_id, name in gone:
            del self.states[(machine_id, name)]
            await self.registry.delete_unit_states(machine_id, [name])
        self.least_running = min(self.least_running, self.running())
        for key in self.schedule:
            if key not in self.states:
                self.starting[key] = self.starting.get(key, self.delay) - 1
        new = [UnitState(e.name, e.machine_id, "loaded", "active", "running", e.hash)
               for k, e in self.schedule.items() if self.starting.get(k) == 0]
        for s in new:
            del self.starting[(s.machine_id, s.name)]
        self.states.update({(s.machine_id, s.name): s for s in new})
        assert self.lease is not None
        await self.registry.put_unit_states(new, self.lease)
        self.cordons = await self.registry.list_cordons()

    def on(self, machine_id: str) -> set[str]:
        return {name for m, name in self.schedule if m == machine_id}


async def drain(sim: Sim, drainer: Drainer, token: LeaderToken, rounds: int) -> None:
    for _ in range(rounds):
        await drainer.step(token)
        await sim.round()


@pytest.mark.parametrize("max_parallel", [1, 2])
async def test_a_no_block_drain_is_paced_by_the_engine_from_the_record(
    max_parallel: int,
) -> None:
    """fleetctl wrote the drain and left: the drainer alone moves the service's four
    instances, max_parallel at a time, each running elsewhere before the next."""
    registry = MemoryRegistry()
    sim = Sim(registry, 4)
    token = await sim.start()
    await registry.put_cordon(Cordon(A, DRAINING, max_parallel=max_parallel))
    await sim.round()
    drainer = Drainer(registry, sim.view, clock=lambda: 0.0)
    await drain(sim, drainer, token, 12)
    assert sim.on(A) == set() and len(sim.on(B) | sim.on(C)) == 4
    assert sim.running() == 4
    assert sim.least_running == 4 - max_parallel  # never fewer, and it did move in parallel
    assert set(sim.cordons[A].move) == {f"web@{i}.service" for i in range(1, 5)}


async def test_a_new_leader_picks_the_drain_up_where_the_record_says() -> None:
    registry = MemoryRegistry()
    sim = Sim(registry, 4, delay=3)
    token = await sim.start()
    await registry.put_cordon(Cordon(A, DRAINING))
    await sim.round()
    first = Drainer(registry, sim.view, clock=lambda: 0.0)
    await drain(sim, first, token, 1)  # web@1 asked, scheduled elsewhere, starting there
    assert sim.cordons[A].move == ("web@1.service",) and len(sim.on(A)) == 3
    await registry.resign(token)  # the leader goes; another takes the lead
    lease = await registry.grant_lease(60)
    token2 = await registry.campaign(B, lease)
    assert token2 is not None
    again = Drainer(registry, sim.view, clock=lambda: 0.0)  # nothing in memory
    await drain(sim, again, token2, 1)  # web@1 still starting: nothing more is asked
    assert sim.cordons[A].move == ("web@1.service",) and len(sim.on(A)) == 3
    await sim.round()  # web@1 runs now
    await first.step(token)  # the deposed leader would ask web@2: refused
    await sim.round()
    assert sim.cordons[A].move == ("web@1.service",) and len(sim.on(A)) == 3
    await drain(sim, again, token2, 30)
    assert sim.on(A) == set() and sim.running() == 4 and sim.least_running == 3
    assert len(sim.cordons[A].move) == 4


async def test_the_deadline_in_the_record_stops_what_is_left_and_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = MemoryRegistry()
    sim = Sim(registry, 2, delay=2)
    pinned = rec("pinned.service", f"MachineID={A[:8]}")  # cannot move
    sim.units.append(pinned)
    sim.schedule[(A, "pinned.service")] = ScheduledUnit(
        "pinned.service", A, pinned.desired, pinned.unit.hash, pinned.unit.contents)
    token = await sim.start()
    await registry.put_cordon(Cordon(A, DRAINING, deadline=1000.0))
    await sim.round()
    now = [999.0]
    drainer = Drainer(registry, sim.view, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="fleetpy.engine")
    await drain(sim, drainer, token, 8)  # the others move, one at a time
    assert sim.on(A) == {"pinned.service"} and sim.cordons[A].stop == ()
    now[0] = 1000.0
    await drain(sim, drainer, token, 4)
    assert sim.on(A) == set() and sim.cordons[A].stop == ("pinned.service",)
    assert sim.waiting == {"pinned.service": "machine a1b2c3d4 is draining"}
    await registry.put_cordon(replace(sim.cordons[A], reason="later"))
    await drain(sim, drainer, token, 2)  # nothing new to decide: nothing said again
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if "pinned by" in line] == [
        f"drain of machine a1b2c3d4: pinned.service cannot move: pinned by "
        f"MachineID={A[:8]}"], lines
    assert lines.count("drain of machine a1b2c3d4: deadline passed: stopping "
                       "pinned.service") == 1, lines
    assert sum("moving web@1.service" in line for line in lines) == 1, lines
    assert sum("1 unit(s) cannot leave" in line for line in lines) == 1, lines
    assert sum("nothing left to move" in line for line in lines) == 1, lines


async def test_a_finished_drain_reads_nothing_until_its_inputs_change() -> None:
    registry = MemoryRegistry()
    sim = Sim(registry, 2)
    token = await sim.start()
    await registry.put_cordon(Cordon(A, DRAINING, max_parallel=2))
    await sim.round()
    drainer = Drainer(registry, sim.view, clock=lambda: 0.0)
    await drain(sim, drainer, token, 4)
    assert sim.on(A) == set()
    await drainer.step(token)
    before = sum(registry.backend.requests.values())
    for _ in range(5):
        await drainer.step(token)
    assert sum(registry.backend.requests.values()) == before
    await registry.put_cordon(replace(sim.cordons[A], reason="changed"))
    sim.cordons = await registry.list_cordons()
    await drainer.step(token)
    assert sum(registry.backend.requests.values()) > before


def test_the_states_read_are_enough_for_the_same_decision() -> None:
    """states_needed: the drain reads the in-flight units' states, not all of states/,
    and decides as it would on every state."""
    units = [rec(f"web@{i}.service") for i in range(1, 6)]
    entries = [ScheduledUnit(r.unit.name, m, r.desired, r.unit.hash, r.unit.contents)
               for r, m in zip(units, [B, C, A, A, A], strict=True)]
    others = [ScheduledUnit(f"other{i}.service", B, e.target, e.hash, e.contents)
              for i, e in enumerate(entries)]
    schedule = entries + others

    def up(e: ScheduledUnit, state: str = "active") -> UnitState:
        return UnitState(e.name, e.machine_id, "loaded", state, "running", e.hash)

    gone = UnitState("web@9.service", A, "loaded", "deactivating", "stop", "h")
    every = [up(entries[0]), up(entries[1], "activating"), *map(up, entries[2:]),
             *map(up, others), gone]
    cordon = Cordon(A, DRAINING, max_parallel=2, stop=("web@9.service",),
                    move=("web@1.service", "web@2.service"))
    keys = states_needed(cordon, schedule)
    assert keys == [(A, "web@9.service"), (B, "web@1.service"), (C, "web@2.service")]
    some = [s for s in every if (s.machine_id, s.name) in keys]
    for passed in (False, True):
        assert plan_drain(cordon, schedule, some, {}, 2, passed) == \
            plan_drain(cordon, schedule, every, {}, 2, passed)
