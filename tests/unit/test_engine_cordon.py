"""Engine plan with cordons: no new units on a cordoned machine, drains' move/stop requests."""

from __future__ import annotations

from fleetpy.engine.plan import plan_engine
from fleetpy.model.cordon import Cordon, MachineState
from tests.unit.test_engine_plan import A, B, apply, entry, layout, machines, rec

DRAINING = MachineState.DRAINING


def test_cordoned_machine_gets_no_new_units_and_keeps_its_own() -> None:
    old, new = rec("old.service"), rec("new.service")
    busy = [rec(f"busy{i}.service") for i in (1, 2)]
    schedule = [entry(old, "a"), entry(busy[0], "b"), entry(busy[1], "b")]
    plan = plan_engine([old, new, *busy], machines("ab"), schedule, cordons={A: Cordon(A)})
    after = layout(apply(schedule, plan))  # a is the least loaded, but cordoned
    assert after == {"busy1.service": "b", "busy2.service": "b", "new.service": "b",
                     "old.service": "a"}


def test_unit_that_only_fits_the_cordoned_machine_waits_naming_the_cordon() -> None:
    pinned = rec("pinned.service", f"MachineID={A[:8]}")
    plan = plan_engine([pinned], machines("ab"), [], cordons={A: Cordon(A)})
    assert plan.puts == []
    assert plan.waiting == {"pinned.service": "machine a1b2c3d4 is cordoned"}
    # uncordoned: it is placed
    plan = plan_engine([pinned], machines("ab"), [], waiting=plan.waiting, cordons={})
    assert layout(plan.puts) == {"pinned.service": "a"}
    assert plan.waiting == {"pinned.service": None}


def test_global_unit_skips_a_cordoned_machine_but_stays_where_it_runs() -> None:
    glob = rec("g.service", "Global=true")
    fresh = plan_engine([glob], machines("abc"), [], cordons={A: Cordon(A)})
    assert layout(fresh.puts) == {"g.service": "bc"}
    running = [entry(glob, m) for m in "abc"]
    plan = plan_engine([glob], machines("abc"), running, cordons={A: Cordon(A)})
    assert plan.deletes == [] and plan.puts == []


def test_drain_move_takes_a_machineof_group_to_another_machine_together() -> None:
    web = rec("web.service", "Conflicts=web*")
    side = rec("side.service", "MachineOf=web.service")
    other = rec("web2.service", "Conflicts=web*")
    schedule = [entry(web, "a"), entry(side, "a"), entry(other, "b")]
    nothing_asked = plan_engine([web, side, other], machines("abc"), schedule,
                                cordons={A: Cordon(A, DRAINING)})
    assert nothing_asked.puts == [] and nothing_asked.deletes == []
    cordon = Cordon(A, DRAINING, move=("web.service", "side.service"))
    plan = plan_engine([web, side, other], machines("abc"), schedule, cordons={A: cordon})
    assert layout(apply(schedule, plan)) == {
        "side.service": "c", "web.service": "c", "web2.service": "b"}
    assert "unscheduled web.service from a1b2c3d4: machine is draining" in plan.decisions


def test_drain_move_keeps_a_unit_nothing_else_can_take_and_says_why() -> None:
    web = rec("web.service", "Conflicts=web*")
    others = [rec(f"web{i}.service", "Conflicts=web*") for i in (2, 3)]
    schedule = [entry(web, "a"), entry(others[0], "b"), entry(others[1], "c")]
    cordon = Cordon(A, DRAINING, move=("web.service",))
    plan = plan_engine([web, *others], machines("abc"), schedule, cordons={A: cordon})
    assert plan.puts == [] and plan.deletes == []
    reason = plan.waiting["web.service"]
    assert reason is not None and reason.startswith("cannot leave draining machine a1b2c3d4")
    assert "Conflicts" in reason


def test_drain_stop_takes_a_pinned_unit_off_and_it_waits_naming_the_drain() -> None:
    pinned = rec("pinned.service", f"MachineID={A[:8]}")
    schedule = [entry(pinned, "a")]
    cordon = Cordon(A, DRAINING, stop=("pinned.service",))
    plan = plan_engine([pinned], machines("ab"), schedule, cordons={A: cordon})
    assert plan.deletes == [(A, "pinned.service")]
    assert plan.waiting == {"pinned.service": "machine a1b2c3d4 is draining"}


def test_global_units_stay_on_a_draining_machine_unless_stop_global() -> None:
    glob = rec("g.service", "Global=true")
    running = [entry(glob, m) for m in "ab"]
    keep = Cordon(A, DRAINING, move=("g.service",))
    assert plan_engine([glob], machines("ab"), running, cordons={A: keep}).deletes == []
    stop = Cordon(A, DRAINING, stop_global=True)
    plan = plan_engine([glob], machines("ab"), running, cordons={A: stop})
    assert plan.deletes == [(A, "g.service")]
    assert all(mid != B for mid, _ in plan.deletes)
