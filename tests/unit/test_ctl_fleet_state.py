"""fleetctl and fleet's record in the agents' reports: STATE, and the verdict of a blocking
start, stop or destroy (a start that fails at once, a stop systemd refuses). Pure."""

from __future__ import annotations

import pytest

from fleetpy.api.snapshot import Snapshot
from fleetpy.ctl import lists
from fleetpy.ctl.state import view
from fleetpy.ctl.wait import Goal, Tracker
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.registry.base import UnitRecord

MID = "4f4a4289a8f24d0ab6d1b6a5e2f6a001"
WHERE = "4f4a4289.../172.17.8.101"
REFUSED = ("systemd stop hello.service: Operation refused, unit hello.service may be "
           "requested by dependency only (it is configured to refuse manual start/stop).")


def reported(desired: TargetState, fleet: str, active: str, sub: str, error: str = "",
             scheduled: bool = True) -> Snapshot:
    unit = UnitFile("hello.service", "[Service]\nExecStart=/bin/true\n", "4" * 40)
    state = UnitState("hello.service", MID, "loaded", active, sub, unit.hash, fleet, error)
    sched = (ScheduledUnit("hello.service", MID, desired, unit.hash, ""),) if scheduled else ()
    return Snapshot(
        units={"hello.service": UnitRecord(unit, desired)} if scheduled else {},
        schedule=sched, states=(state,), machines={MID: Machine(MID, "172.17.8.101")},
    )


@pytest.mark.parametrize(
    ("fleet", "active", "sub", "shown"),
    [
        ("loaded", "inactive", "dead", "loaded"),
        ("loaded", "active", "running", "loaded"),  # systemd started it (Requires=, socket)
        ("starting", "active", "running", "launched"),
        ("launched", "active", "running", "launched"),
        ("launched", "activating", "start", "launched"),
        ("launched", "active", "exited", "launched"),  # oneshot, RemainAfterExit=yes
        ("launched", "inactive", "dead", "finished"),  # oneshot done, or exited 0
        ("launched", "failed", "failed", "failed"),
        ("launched", "activating", "auto-restart", "failed"),
        ("", "active", "running", "launched"),  # an older agent: systemd's view
        ("", "failed", "failed", "loaded"),
    ],
)
def test_list_unit_files_state_says_what_fleet_did(
    fleet: str, active: str, sub: str, shown: str
) -> None:
    v = view(reported(TargetState.LAUNCHED, fleet, active, sub), "hello.service")
    assert v.shown == shown


def test_stop_error_shows_in_list_unit_files_reason() -> None:
    s = reported(TargetState.LOADED, "launched", "active", "running", f"stop: {REFUSED}")
    (row,) = lists.unit_file_rows(s, False)
    assert (row["dstate"], row["state"], row["reason"]) == ("loaded", "launched",
                                                          f"stop: {REFUSED}")


def verdict(goal: Goal, *snaps: Snapshot) -> tuple[list[tuple[str, str]], list[str], bool]:
    t = Tracker({"hello.service": goal})
    printed = [line for s in snaps for line in t.observe(s)]
    return printed, t.errors, bool(t.pending)


def test_start_waits_for_the_start_to_settle_then_says_failed() -> None:
    printed, errors, pending = verdict(
        Goal.LAUNCHED,
        reported(TargetState.LAUNCHED, "loaded", "inactive", "dead"),
        reported(TargetState.LAUNCHED, "starting", "active", "running"),
    )
    assert (printed, errors, pending) == ([], [], True)  # active/running, but not settled
    printed, errors, pending = verdict(
        Goal.LAUNCHED,
        reported(TargetState.LAUNCHED, "starting", "active", "running"),
        reported(TargetState.LAUNCHED, "launched", "failed", "failed"),
    )
    assert errors == [f"Unit hello.service failed on {WHERE}: systemd says failed/failed"]
    assert not printed and not pending


def test_start_of_a_unit_that_settled_running_or_finished() -> None:
    printed, errors, _ = verdict(
        Goal.LAUNCHED, reported(TargetState.LAUNCHED, "launched", "active", "running"))
    assert printed == [("out", f"Unit hello.service launched on {WHERE}")] and not errors
    printed, errors, _ = verdict(
        Goal.LAUNCHED, reported(TargetState.LAUNCHED, "launched", "inactive", "dead"))
    assert printed == [("out", f"Unit hello.service launched on {WHERE} "
                               "(finished: systemd says inactive/dead)")] and not errors


def test_start_that_systemd_refused() -> None:
    _, errors, pending = verdict(Goal.LAUNCHED, reported(
        TargetState.LAUNCHED, "launched", "inactive", "dead",
        "start: systemd start hello.service: Unit hello.service has a bad unit file setting."))
    assert errors == [f"Unit hello.service failed to start on {WHERE}: systemd start "
                      "hello.service: Unit hello.service has a bad unit file setting."]
    assert not pending


def test_a_refused_start_shows_failed() -> None:
    s = reported(TargetState.LAUNCHED, "launched", "inactive", "dead",
                 "start: systemd start hello.service: Unit hello.service is masked.")
    assert view(s, "hello.service").shown == "failed"


def test_refused_stop_fails_the_stop_with_machine_and_message() -> None:
    _, errors, pending = verdict(Goal.LOADED, reported(
        TargetState.LOADED, "launched", "active", "running", f"stop: {REFUSED}"))
    assert errors == [f"Unit hello.service could not be stopped on {WHERE}: {REFUSED}"]
    assert not pending
    # a loaded unit that systemd runs (Requires=) is stopped as far as fleet goes
    printed, errors, _ = verdict(Goal.LOADED, reported(
        TargetState.LOADED, "loaded", "active", "running"))
    assert printed == [("out", f"Unit hello.service loaded on {WHERE}")] and not errors


def test_refused_stop_fails_destroy() -> None:
    s = reported(TargetState.LOADED, "launched", "active", "running", f"unload: {REFUSED}",
                 scheduled=False)
    _, errors, pending = verdict(Goal.GONE, s)
    assert errors == [f"Unit hello.service could not be stopped and unloaded on {WHERE}: "
                      f"{REFUSED}"]
    assert not pending
    # a refused stop of an earlier `fleetctl stop` is not the destroy's verdict
    s = reported(TargetState.LOADED, "launched", "active", "running", f"stop: {REFUSED}",
                 scheduled=False)
    assert verdict(Goal.GONE, s)[1:] == ([], True)
