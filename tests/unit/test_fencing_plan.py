"""StopWhenDisconnected in the agent's plan: given the time since the last renewal and agent_ttl.

The planner has no clock: these tables give it "seconds since the lease was
last renewed" and check when fenced units stop, when they start again, and
that units without the option are never stopped for a lost connection.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpy.agent.plan import (
    STOP_AT,
    CurrentUnit,
    DesiredUnit,
    Fence,
    Record,
    Task,
    TaskKind,
    cut_off,
    plan_agent,
)
from fleetpy.model.types import TargetState
from tests.unit.test_agent_plan import Records, cur, want
from tests.unit.test_agent_plan_props import CURRENT, DESIRED, RECORD, UP, apply

LOADED, LAUNCHED = TargetState.LOADED, TargetState.LAUNCHED
H1 = "1" * 40
U, L, RE, S, ST = TaskKind.UNLOAD, TaskKind.LOAD, TaskKind.RELOAD, TaskKind.STOP, TaskKind.START
TTL = 30.0  # 2/3 of it is 20.0 exactly


def fenced(name: str, target: TargetState = LAUNCHED) -> DesiredUnit:
    return replace(want(name, target), fenced=True)


def plan(
    desired: list[DesiredUnit],
    current: list[CurrentUnit],
    record: Records,
    fence: Fence | None,
) -> list[Task]:
    return plan_agent({d.name: d for d in desired}, {c.name: c for c in current}, record,
                      fence=fence)


def kinds(tasks: list[Task]) -> list[tuple[TaskKind, str]]:
    return [(t.kind, t.unit) for t in tasks]


def launched(*names: str) -> Records:
    return {n: Record(H1, LAUNCHED) for n in names}


@pytest.mark.parametrize(
    ("since", "stops"),
    [(0.0, False), (10.0, False), (19.999, False), (20.0, True), (25.0, True), (31.0, True),
     (math.inf, True)],
)
def test_cut_off_at_two_thirds_of_agent_ttl(since: float, stops: bool) -> None:
    assert abs(STOP_AT - 2 / 3) < 1e-12
    assert cut_off(since, TTL) is stops
    tasks = plan([fenced("f.service")], [cur("f.service")], launched("f.service"),
                 Fence(since, TTL))
    assert kinds(tasks) == ([(S, "f.service")] if stops else [])


def test_the_stop_says_why_and_records_loaded_not_a_user_stop() -> None:
    tasks = plan([fenced("f.service")], [cur("f.service")], launched("f.service"),
                 Fence(21.5, TTL))
    assert len(tasks) == 1
    stop = tasks[0]
    assert stop.kind == S
    assert "StopWhenDisconnected" in stop.reason
    assert "not renewed for 21.5s" in stop.reason
    assert "20.0s, 2/3 of agent_ttl 30s" in stop.reason
    # fleet's record says loaded (so that fleet starts it again); the target is the schedule's
    assert stop.record == Record(H1, LOADED)
    lost = plan([fenced("f.service")], [cur("f.service")], launched("f.service"),
                Fence(math.inf, TTL))
    assert "lease lost" in lost[0].reason


def test_unfenced_units_are_never_stopped_on_disconnect() -> None:
    desired = [want("u.service"), fenced("f.service")]
    current = [cur("u.service"), cur("f.service")]
    for since in (20.0, 100.0, math.inf):
        tasks = plan(desired, current, launched("u.service", "f.service"), Fence(since, TTL))
        assert kinds(tasks) == [(S, "f.service")]


def test_a_fenced_unit_is_not_started_while_cut_off() -> None:
    record = {"f.service": Record(H1, LOADED)}
    down = [cur("f.service", "inactive")]
    assert plan([fenced("f.service")], down, record, Fence(20.0, TTL)) == []
    assert kinds(plan([fenced("f.service")], down, record, Fence(19.9, TTL))) == [
        (ST, "f.service")]
    # scheduled here while cut off (a late watch event): loaded, not started
    assert kinds(plan([fenced("f.service")], [], {}, Fence(25.0, TTL))) == [
        (L, "f.service"), (RE, "")]


def test_started_again_once_renewed_and_confirmed() -> None:
    record = launched("f.service")
    tasks = plan([fenced("f.service")], [cur("f.service")], record, Fence(22.0, TTL))
    after = apply(tasks, {"f.service": fenced("f.service")}, {"f.service": cur("f.service")},
                  record)
    assert after["f.service"].active_state == "inactive"
    # renewed, but not yet confirmed as still scheduled here: still down
    unconfirmed = Fence(0.5, TTL, frozenset({"f.service"}))
    assert plan([fenced("f.service")], list(after.values()), record, unconfirmed) == []
    # confirmed: fleet starts it again (its record says loaded)
    tasks = plan([fenced("f.service")], list(after.values()), record, Fence(0.5, TTL))
    assert kinds(tasks) == [(ST, "f.service")]
    assert tasks[0].record == Record(H1, LAUNCHED)


def test_a_finished_fenced_unit_stays_as_systemd_left_it() -> None:
    """Fleet launched it, it exited: nothing to stop now, nothing to restart later."""
    record = launched("f.service")
    down = [cur("f.service", "inactive")]
    assert plan([fenced("f.service")], down, record, Fence(25.0, TTL)) == []
    assert plan([fenced("f.service")], down, record, Fence(0.0, TTL)) == []


def test_fenced_unit_desired_loaded_is_handled_as_always() -> None:
    down = [cur("f.service", "inactive")]
    record = {"f.service": Record(H1, LOADED)}
    assert plan([fenced("f.service", LOADED)], down, record, Fence(25.0, TTL)) == []
    # started by systemd (a dependency): fleet only loaded it, fenced or not
    assert plan([fenced("f.service", LOADED)], [cur("f.service")], record,
                Fence(25.0, TTL)) == []


def test_unconfirmed_applies_to_fenced_units_only() -> None:
    fence = Fence(1.0, TTL, frozenset({"f.service", "u.service"}))
    down = [cur("f.service", "inactive"), cur("u.service", "inactive")]
    record = {n: Record(H1, LOADED) for n in ("f.service", "u.service")}
    assert kinds(plan([fenced("f.service"), want("u.service")], down, record, fence)) == [
        (ST, "u.service")]


SINCE = st.one_of(st.floats(0, 100, allow_nan=False), st.just(math.inf))


@settings(max_examples=300, deadline=None)
@given(desired_spec=DESIRED, current_spec=CURRENT, record=RECORD, since=SINCE,
       fence_mask=st.sets(st.sampled_from(["a.service", "b.service", "c.socket", "d@1.service"])))
def test_fence_touches_fenced_units_only_and_stops_them_all(
    desired_spec: dict[str, tuple[TargetState, str]],
    current_spec: dict[str, tuple[str, str | None, str]],
    record: Records,
    since: float,
    fence_mask: set[str],
) -> None:
    desired = {n: replace(want(n, t, h), fenced=n in fence_mask)
               for n, (t, h) in desired_spec.items()}
    current = {n: cur(n, a, h, load) for n, (a, h, load) in current_spec.items()}
    fence = Fence(since, TTL)
    plain = plan_agent(desired, current, dict(record))
    tasks = plan_agent(desired, current, dict(record), fence=fence)
    unfenced = {n for n in set(desired) | set(current) if n not in fence_mask or n not in desired}
    # units without the option: exactly the tasks they get without any fence
    assert [t for t in tasks if t.unit in unfenced] == [t for t in plain if t.unit in unfenced]
    if not fence.cut_off:
        assert tasks == plain
        return
    assert not [t for t in tasks if t.kind == ST and t.unit in fence_mask]
    after = apply(tasks, desired, current, record)
    for name, d in desired.items():
        if d.fenced and d.target == LAUNCHED:
            assert after[name].active_state not in UP, (name, tasks)


def test_a_fenced_unit_in_back_off_still_stops() -> None:
    desired = {"f.service": fenced("f.service"), "u.service": want("u.service")}
    current = {"f.service": cur("f.service"), "u.service": cur("u.service")}
    holding = frozenset({"f.service", "u.service"})
    record = launched("f.service", "u.service")
    assert plan_agent(desired, current, record, holding, Fence(1.0, TTL)) == []
    tasks = plan_agent(desired, current, record, holding, Fence(25.0, TTL))
    assert kinds(tasks) == [(S, "f.service")]
    assert tasks[0].record == Record(H1, LOADED)
    down = {"f.service": cur("f.service", "inactive"), "u.service": cur("u.service")}
    assert plan_agent(desired, down, record, holding, Fence(25.0, TTL)) == []
