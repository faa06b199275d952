"""The drain planner (fleetpy.engine.drain): which groups move next, what is stuck or pinned."""

from __future__ import annotations

from fleetpy.engine.drain import plan_drain
from fleetpy.model.cordon import Cordon, MachineState
from fleetpy.model.types import ScheduledUnit, TargetState, UnitState
from fleetpy.model.unitfile import make_unit_file

A = "a1b2c3d4" + "0" * 24
B = "b2c3d4e5" + "1" * 24
DRAIN = Cordon(A, MachineState.DRAINING)


def unit(name: str, where: str, xfleet: str = "") -> ScheduledUnit:
    text = "[Service]\nExecStart=/bin/true\n"
    if xfleet:
        text += "[X-Fleet]\n" + xfleet.replace(";", "\n") + "\n"
    f = make_unit_file(name, text)
    return ScheduledUnit(name, where, TargetState.LAUNCHED, f.hash, f.contents)


def active(e: ScheduledUnit, state: str = "active") -> UnitState:
    return UnitState(e.name, e.machine_id, "loaded", state, "running", e.hash)


WEB1, WEB2 = unit("web@1.service", A), unit("web@2.service", A)
SIDE1 = unit("side@1.service", A, "MachineOf=web@1.service")
SIDE2 = unit("side@2.service", A, "MachineOf=web@2.service")
PINNED = unit("pinned.service", A, f"MachineID={A[:8]}")
GLOBAL = unit("log.service", A, "Global=true")


def test_one_machineof_group_at_a_time_then_the_next_once_it_runs_elsewhere() -> None:
    schedule = [WEB1, WEB2, SIDE1, SIDE2, GLOBAL]
    first = plan_drain(DRAIN, schedule, [], {})
    assert first.cordon.move == ("side@1.service", "web@1.service")
    assert first.queued == ("side@2.service", "web@2.service")
    assert first.staying == ("log.service",) and not first.finished
    # the engine moved group 1 to B; not running there yet: group 2 waits
    moved = [unit("web@1.service", B), unit("side@1.service", B, "MachineOf=web@1.service")]
    schedule = [*moved, WEB2, SIDE2, GLOBAL]
    second = plan_drain(first.cordon, schedule, [], {})
    assert second.cordon.move == first.cordon.move and second.moved == ()
    # running there: group 2 is asked
    third = plan_drain(first.cordon, schedule, [active(e) for e in moved], {})
    assert third.moved == ("side@1.service", "web@1.service")
    assert third.cordon.move == ("side@1.service", "side@2.service", "web@1.service",
                                 "web@2.service")
    assert third.left == ("side@2.service", "web@2.service")


def test_max_parallel_asks_several_groups() -> None:
    step = plan_drain(DRAIN, [WEB1, WEB2, SIDE1, SIDE2], [], {}, max_parallel=2)
    assert len(step.cordon.move) == 4 and step.queued == ()


def test_pinned_unit_is_reported_and_never_asked_and_a_deadline_stops_it() -> None:
    step = plan_drain(DRAIN, [PINNED], [], {})
    assert step.pinned == {"pinned.service": f"pinned by MachineID={A[:8]}"}
    assert step.cordon.move == () and step.finished and step.left == ("pinned.service",)
    late = plan_drain(step.cordon, [PINNED], [], {}, deadline_passed=True)
    assert late.cordon.stop == ("pinned.service",) and not late.finished
    why = {"pinned.service": "machine a1b2c3d4 is draining"}
    unscheduled = plan_drain(late.cordon, [], [active(PINNED)], why, deadline_passed=True)
    assert unscheduled.stopping == ("pinned.service",) and not unscheduled.finished
    gone = plan_drain(late.cordon, [], [active(PINNED, "inactive")], why, deadline_passed=True)
    assert gone.finished and gone.left == ()


def test_a_group_the_engine_cannot_place_is_stuck_with_its_reason_and_frees_its_slot() -> None:
    asked = Cordon(A, MachineState.DRAINING, move=("web@1.service",))
    why = "cannot leave draining machine a1b2c3d4: Conflicts: web@* runs on every machine"
    step = plan_drain(asked, [WEB1, WEB2], [], {"web@1.service": why})
    assert step.stuck == {"web@1.service": why}
    assert "web@2.service" in step.cordon.move  # the next group got the slot


def test_global_units_stay_unless_stop_global_then_leave_last() -> None:
    step = plan_drain(DRAIN, [GLOBAL], [], {})
    assert step.finished and step.left == () and step.cordon.stop == ()
    both = Cordon(A, MachineState.DRAINING, stop_global=True)
    busy = plan_drain(both, [GLOBAL, WEB1], [], {})
    assert busy.cordon.stop == ()  # the others move first
    quiet = plan_drain(both, [GLOBAL], [], {})
    assert quiet.cordon.stop == ("log.service",) and not quiet.finished
