"""The rolling update's decisions (fleetpy.ctl.rolling): pure, no clock, no registry."""

from __future__ import annotations

from fleetpy.ctl.rolling import (
    Health,
    Watch,
    describe,
    health,
    next_batch,
    observe,
    pick_state,
    plan_rollout,
    revert_order,
)
from fleetpy.model.types import TargetState, UnitState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.base import UnitRecord

OLD = "[Service]\nExecStart=/bin/sleep 1000\n"
NEW = "[Service]\nExecStart=/bin/sleep 2000\n"


def rec(name: str, text: str, desired: TargetState = TargetState.LAUNCHED) -> UnitRecord:
    return UnitRecord(unit=make_unit_file(name, text), desired=desired)


def state(name: str, digest: str, active: str = "active", sub: str = "running",
          machine: str = "m1", error: str = "") -> UnitState:
    return UnitState(name, machine, "loaded", active, sub, digest, "launched", error)


def test_plan_takes_the_templates_instances_in_numeric_order() -> None:
    new = make_unit_file("web@.service", NEW)
    records = {r.unit.name: r for r in [
        rec("web@.service", OLD, TargetState.INACTIVE),
        rec("web@10.service", OLD), rec("web@2.service", OLD), rec("web@1.service", OLD),
        rec("web@3.service", NEW),  # already current
        rec("web@4.service", OLD, TargetState.LOADED),
        rec("api@1.service", OLD), rec("web.service", OLD),
    ]}
    plan = plan_rollout(new, records)
    assert plan.launched == ("web@1.service", "web@2.service", "web@10.service")
    assert plan.others == ("web@4.service",)
    assert plan.current == ("web@3.service",)


def test_next_batch_keeps_max_parallel_in_flight() -> None:
    pending = ["a", "b", "c", "d"]
    assert next_batch(pending, 0, 1) == ["a"]
    assert next_batch(pending, 1, 1) == []
    assert next_batch(pending, 1, 3) == ["a", "b"]
    assert next_batch(["a"], 0, 5) == ["a"]


def test_healthy_only_after_min_healthy_time_active_with_the_new_hash() -> None:
    new = make_unit_file("web@1.service", NEW).hash
    old = make_unit_file("web@1.service", OLD).hash
    w = Watch("web@1.service", new, started=100.0)
    w = observe(w, state("web@1.service", old), 101.0)  # old version still up
    assert w.active_since is None
    assert health(w, 101.0, 5, 60) is Health.WAITING
    w = observe(w, state("web@1.service", new, "activating", "start-post"), 102.0)
    assert w.active_since is None  # ExecStartPost not finished: not active yet
    w = observe(w, state("web@1.service", new), 103.0)
    assert w.active_since == 103.0 and w.machine == "m1"
    w = observe(w, state("web@1.service", new), 107.0)
    assert health(w, 107.0, 5, 60) is Health.WAITING
    assert health(w, 108.0, 5, 60) is Health.HEALTHY


def test_a_break_restarts_the_min_healthy_clock() -> None:
    new = make_unit_file("web@1.service", NEW).hash
    w = observe(Watch("web@1.service", new, 0.0), state("web@1.service", new), 1.0)
    w = observe(w, state("web@1.service", new, "failed", "failed"), 3.0)
    w = observe(w, state("web@1.service", new), 4.0)
    assert w.active_since == 4.0
    assert health(w, 6.0, 5, 60) is Health.WAITING
    assert health(w, 9.0, 5, 60) is Health.HEALTHY


def test_not_healthy_by_the_deadline_fails() -> None:
    new = make_unit_file("web@1.service", NEW).hash
    w = Watch("web@1.service", new, started=10.0)
    w = observe(w, state("web@1.service", new, "failed", "failed"), 15.0)
    assert health(w, 39.9, 5, 30) is Health.WAITING
    assert health(w, 40.0, 5, 30) is Health.FAILED
    # up, but not for min-healthy-time when the deadline comes: failed too
    w = observe(w, state("web@1.service", new), 38.0)
    assert health(w, 40.0, 5, 30) is Health.FAILED


def test_describe_names_state_sub_state_and_error() -> None:
    new = make_unit_file("web@1.service", NEW).hash
    old = make_unit_file("web@1.service", OLD).hash
    text = describe(new, state("web@1.service", new, "failed", "failed", error="exit code 1"))
    assert text == "failed/failed (load loaded) on m1; last error: exit code 1"
    assert "still reported with hash " + old[:7] in describe(new, state("web@1.service", old))
    assert describe(new, None, "no machine fits") == "waiting for a machine: no machine fits"


def test_revert_puts_the_failing_ones_first_then_latest_first() -> None:
    assert revert_order(["a", "b", "c", "d"], ["c"]) == ["c", "d", "b", "a"]
    assert revert_order(["a"], ["a"]) == ["a"]
    assert revert_order([], []) == []


def test_pick_state_prefers_the_scheduled_machine() -> None:
    states = [state("a", "h1", machine="m1"), state("a", "h2", machine="m2"),
              state("b", "h3", machine="m1")]
    assert pick_state(states, "a", "m2") == states[1]
    assert pick_state(states, "a", None) == states[0]
    assert pick_state(states, "a", "m9") == states[0]
    assert pick_state(states, "c", None) is None
