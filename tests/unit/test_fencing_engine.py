"""StopWhenDisconnected in the engine's plan: a gone machine's fenced units wait before moving.

The planner has no clock: ``gone`` gives the seconds since the engine saw
each machine go, ``fence_wait`` the margin; unfenced units move as before.
"""

from __future__ import annotations

import pytest

from fleetpy.engine.plan import FENCE_MARGIN, plan_engine
from fleetpy.model.types import ScheduledUnit, TargetState
from tests.unit.test_engine_plan import A, B, apply, entry, layout, machines, rec

TTL = 30.0
WAIT = FENCE_MARGIN * TTL  # 10 s
FENCED = rec("f.service", "StopWhenDisconnected=true")
PLAIN = rec("u.service")


def test_margin_is_one_keepalive_interval() -> None:
    assert abs(WAIT - 10.0) < 1e-9


@pytest.mark.parametrize(("since", "moves"), [(0.0, False), (9.99, False), (10.0, True),
                                              (300.0, True)])
def test_fenced_unit_moves_only_after_the_margin(since: float, moves: bool) -> None:
    schedule = [entry(FENCED, "a"), entry(PLAIN, "a")]
    plan = plan_engine([FENCED, PLAIN], machines("b"), schedule, gone={A: since},
                       fence_wait=WAIT)
    after = layout(apply(schedule, plan))
    # the unfenced unit moves at once, whatever the time
    assert after["u.service"] == "b"
    if moves:
        assert after["f.service"] == "b"
        assert plan.recheck_in is None
        assert plan.absent == [A]  # the write must find the machine still gone
        assert "f.service" not in {n for n, why in plan.waiting.items() if why}
    else:
        assert after["f.service"] == "a"  # its entry stays where its agent stops it
        assert (A, "f.service") not in plan.deletes
        assert plan.recheck_in == pytest.approx(WAIT - since)
        reason = plan.waiting["f.service"]
        assert reason is not None and "StopWhenDisconnected" in reason and A[:8] in reason


def test_unfenced_units_move_at_once() -> None:
    schedule = [entry(PLAIN, "a")]
    plan = plan_engine([PLAIN], machines("b"), schedule, gone={A: 0.0}, fence_wait=WAIT)
    assert layout(apply(schedule, plan)) == {"u.service": "b"}
    assert plan.recheck_in is None
    assert plan.absent == []


def test_a_machine_left_out_of_gone_is_long_gone() -> None:
    schedule = [entry(FENCED, "a")]
    plan = plan_engine([FENCED], machines("b"), schedule, gone={}, fence_wait=WAIT)
    assert layout(apply(schedule, plan)) == {"f.service": "b"}


def test_a_held_unit_announces_its_wait_once() -> None:
    schedule = [entry(FENCED, "a")]
    first = plan_engine([FENCED], machines("b"), schedule, gone={A: 1.0}, fence_wait=WAIT)
    reason = first.waiting["f.service"]
    assert reason is not None
    assert any("f.service waits" in d for d in first.decisions)
    again = plan_engine([FENCED], machines("b"), schedule, waiting={"f.service": reason},
                        gone={A: 5.0}, fence_wait=WAIT)
    assert not again.puts and not again.deletes and not again.decisions
    assert again.waiting == {"f.service": reason}
    assert again.recheck_in == pytest.approx(5.0)


def test_machine_back_within_the_margin_keeps_the_unit() -> None:
    schedule = [entry(FENCED, "a")]
    plan = plan_engine([FENCED], machines("ab"), schedule, gone={}, fence_wait=WAIT)
    assert not plan.puts and not plan.deletes
    assert plan.recheck_in is None


def test_fenced_global_unit_leaves_the_gone_machine_at_once() -> None:
    glob = rec("g.service", "Global=true;StopWhenDisconnected=true")
    schedule = [entry(glob, "a"), entry(glob, "b")]
    plan = plan_engine([glob], machines("b"), schedule, gone={A: 0.0}, fence_wait=WAIT)
    assert plan.deletes == [(A, "g.service")]


def test_held_unit_that_is_stopped_or_destroyed_leaves_at_once() -> None:
    schedule = [entry(FENCED, "a")]
    stopped = rec("f.service", "StopWhenDisconnected=true", desired=TargetState.INACTIVE)
    plan = plan_engine([stopped], machines("b"), schedule, gone={A: 0.0}, fence_wait=WAIT)
    assert plan.deletes == [(A, "f.service")] and not plan.puts
    plan = plan_engine([], machines("b"), schedule, gone={A: 0.0}, fence_wait=WAIT)
    assert plan.deletes == [(A, "f.service")]


def test_a_copy_on_a_live_machine_is_not_held() -> None:
    """A second entry (on a live machine) is the copy that stays; the gone one goes now."""
    schedule: list[ScheduledUnit] = [entry(FENCED, "a"), entry(FENCED, "b")]
    plan = plan_engine([FENCED], machines("b"), schedule, gone={A: 0.0}, fence_wait=WAIT)
    assert layout(apply(schedule, plan)) == {"f.service": "b"}
    assert B not in {m for m, _ in plan.deletes}
