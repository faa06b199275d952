"""Pure pieces of fleetctl: the table renderer, state derivation, argument names."""

from __future__ import annotations

import json

import pytest

from fleetpy.api.snapshot import Snapshot
from fleetpy.ctl import files, lists
from fleetpy.ctl.render import parse_fields, render, tabwrite
from fleetpy.ctl.state import is_global, machine_legend, state_message, view
from fleetpy.ctl.wait import Goal, Tracker, reached
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.registry.base import UnitRecord

MID = "4f4a4289a8f24d0ab6d1b6a5e2f6a001"
M = Machine(MID, "172.17.8.101")
HELLO = UnitFile("hello.service", "[Unit]\nDescription=My Service\n", "4286752" + "0" * 33)


def expand(text: str) -> str:
    """Tabs to spaces as a terminal with 8-column tab stops shows them."""
    return "\n".join(line.expandtabs(8) for line in text.splitlines())


# fleet's tables, as the seed walkthrough shows them (tabs as a terminal expands them)
SEED_TABLES = [
    (
        [["UNIT", "HASH", "DSTATE", "STATE", "TARGET"],
         ["hello.service", "4286752", "loaded", "loaded", "4f4a4289.../172.17.8.101"]],
        "UNIT            HASH    DSTATE  STATE   TARGET\n"
        "hello.service   4286752 loaded  loaded  4f4a4289.../172.17.8.101",
    ),
    (
        [["UNIT", "HASH", "DSTATE", "STATE", "TARGET"],
         ["hello.service", "4286752", "inactive", "inactive", "-"]],
        "UNIT            HASH    DSTATE          STATE           TARGET\n"
        "hello.service   4286752 inactive        inactive        -",
    ),
    (
        [["UNIT", "MACHINE", "ACTIVE", "SUB"],
         ["hello.service", "4f4a4289.../172.17.8.101", "inactive", "dead"]],
        "UNIT            MACHINE                         ACTIVE          SUB\n"
        "hello.service   4f4a4289.../172.17.8.101        inactive        dead",
    ),
    (
        [["UNIT", "MACHINE", "ACTIVE", "SUB"],
         ["hello.service", "4f4a4289.../172.17.8.101", "active", "running"]],
        "UNIT            MACHINE                         ACTIVE  SUB\n"
        "hello.service   4f4a4289.../172.17.8.101        active  running",
    ),
    ([["UNIT", "MACHINE", "ACTIVE", "SUB"]], "UNIT    MACHINE ACTIVE  SUB"),
    (
        [["MACHINE", "IP", "METADATA"], ["4f4a4289...", "172.17.8.101", "-"],
         ["ca541338...", "172.17.8.102", "-"]],
        "MACHINE         IP              METADATA\n"
        "4f4a4289...     172.17.8.101    -\n"
        "ca541338...     172.17.8.102    -",
    ),
]


@pytest.mark.parametrize(("lines", "shown"), SEED_TABLES)
def test_tabwrite_matches_fleet_tables(lines: list[list[str]], shown: str) -> None:
    assert expand(tabwrite(lines)) == shown


def test_tabwrite_pads_with_tabs_like_go_tabwriter() -> None:
    # width = widest cell + 1 padding, rounded up to a multiple of 8, filled with tabs
    assert tabwrite([["UNIT", "X"], ["hello.service", "Y"]]) == "UNIT\t\tX\nhello.service\tY\n"
    assert tabwrite([["1234567", "x"]]) == "1234567\tx\n"
    assert tabwrite([["12345678", "x"]]) == "12345678\tx\n"
    assert tabwrite([["12345678", "x"], ["1", "y"]]) == "12345678\tx\n1\t\ty\n"
    assert tabwrite([]) == ""


def test_render_plain_json_and_legend() -> None:
    rows = [{"unit": "a.service", "machine": None}, {"unit": "b.service", "machine": "m/ip"}]
    assert render(["unit", "machine"], rows) == "UNIT\t\tMACHINE\na.service\t-\nb.service\tm/ip\n"
    assert render(["unit"], rows, legend=False) == "a.service\nb.service\n"
    data = json.loads(render(["machine", "unit"], rows, output="json"))
    assert data == [
        {"machine": None, "unit": "a.service"},
        {"machine": "m/ip", "unit": "b.service"},
    ]
    with pytest.raises(ValueError):
        render(["unit"], rows, output="yaml")


@pytest.mark.parametrize(
    ("spec", "result"),
    [
        ("unit,machine", ["unit", "machine"]),
        ("hash", ["hash"]),
        ("", 'Must define output format'),
        ("unit,nope", 'Invalid key in output format: "nope"'),
    ],
)
def test_parse_fields(spec: str, result: list[str] | str) -> None:
    valid = lists.UNITS_FIELDS
    if isinstance(result, list):
        assert parse_fields(spec, valid) == result
    else:
        with pytest.raises(ValueError, match=result):
            parse_fields(spec, valid)


@pytest.mark.parametrize(
    ("full", "machines", "legend"),
    [
        (False, {MID: M}, "4f4a4289.../172.17.8.101"),
        (True, {MID: M}, f"{MID}/172.17.8.101"),
        (False, {}, "4f4a4289..."),
        (False, {MID: Machine(MID, "")}, "4f4a4289..."),
    ],
)
def test_machine_legend(full: bool, machines: dict[str, Machine], legend: str) -> None:
    assert machine_legend(MID, machines, full) == legend


def snap(desired: TargetState, active: str | None, *, scheduled: bool = True,
         hash_: str | None = None, waiting: str | None = None) -> Snapshot:
    rec = UnitRecord(HELLO, desired)
    sched = (ScheduledUnit("hello.service", MID, desired, HELLO.hash, ""),) if scheduled else ()
    states = ()
    if active is not None:
        states = (UnitState("hello.service", MID, "loaded", active, "x", hash_ or HELLO.hash),)
    return Snapshot(
        units={"hello.service": rec}, schedule=sched, states=states,
        waiting={"hello.service": waiting} if waiting else {}, machines={MID: M},
    )


@pytest.mark.parametrize(
    ("s", "current"),
    [
        (snap(TargetState.LAUNCHED, "active"), TargetState.LAUNCHED),
        (snap(TargetState.LAUNCHED, "activating"), TargetState.LAUNCHED),
        (snap(TargetState.LAUNCHED, "reloading"), TargetState.LAUNCHED),
        (snap(TargetState.LOADED, "inactive"), TargetState.LOADED),
        (snap(TargetState.LOADED, "deactivating"), TargetState.LOADED),
        (snap(TargetState.LAUNCHED, "failed"), TargetState.LOADED),
        (snap(TargetState.LAUNCHED, None), TargetState.INACTIVE),  # scheduled, not reported
        (snap(TargetState.INACTIVE, "active", scheduled=False), TargetState.INACTIVE),
        (snap(TargetState.LAUNCHED, "active", hash_="f" * 40), TargetState.INACTIVE),  # old version
    ],
)
def test_current_state(s: Snapshot, current: TargetState) -> None:
    assert view(s, "hello.service").current is current


def test_state_message() -> None:
    assert state_message(view(snap(TargetState.LAUNCHED, "active"), "hello.service"),
                         {MID: M}) == "Unit hello.service launched on 4f4a4289.../172.17.8.101"
    assert state_message(view(snap(TargetState.INACTIVE, None, scheduled=False),
                              "hello.service"), {}) == "Unit hello.service inactive"


@pytest.mark.parametrize(
    ("s", "goal", "done"),
    [
        (snap(TargetState.LAUNCHED, "active"), Goal.LAUNCHED, True),
        (snap(TargetState.LAUNCHED, "active"), Goal.LOADED, True),  # load: loaded or more
        (snap(TargetState.LOADED, "active"), Goal.LOADED, False),  # stop: not until stopped
        (snap(TargetState.LOADED, "inactive"), Goal.LOADED, True),
        (snap(TargetState.LOADED, "inactive"), Goal.LAUNCHED, False),
        (snap(TargetState.INACTIVE, None, scheduled=False), Goal.INACTIVE, True),
        (snap(TargetState.INACTIVE, "inactive"), Goal.INACTIVE, False),
        (snap(TargetState.INACTIVE, "inactive", scheduled=False), Goal.INACTIVE, False),
        (Snapshot(), Goal.GONE, True),
    ],
)
def test_reached(s: Snapshot, goal: Goal, done: bool) -> None:
    assert reached(view(s, "hello.service"), goal) is done


def test_tracker_failed_after_start_but_not_a_stale_failure() -> None:
    t = Tracker({"hello.service": Goal.LAUNCHED})
    assert t.observe(snap(TargetState.LAUNCHED, "failed")) == []  # failed before: wait
    assert t.pending and not t.errors
    t.observe(snap(TargetState.LAUNCHED, "activating"))
    assert t.pending == {}  # activating counts as launched
    t = Tracker({"hello.service": Goal.LAUNCHED})
    t.observe(snap(TargetState.LAUNCHED, "inactive"))
    t.observe(snap(TargetState.LAUNCHED, "failed"))
    assert not t.pending
    assert t.errors == [
        "Unit hello.service failed on 4f4a4289.../172.17.8.101: systemd says failed/x"
    ]


def test_tracker_says_the_waiting_reason_once() -> None:
    t = Tracker({"hello.service": Goal.LAUNCHED})
    s = snap(TargetState.LAUNCHED, None, scheduled=False, waiting="no machine has region=eu")
    msg = ("err", "Unit hello.service is waiting to be scheduled: no machine has region=eu")
    assert t.observe(s) == [msg]
    assert t.observe(s) == []
    assert t.timed_out(s) == [
        "timed out waiting for unit hello.service to be scheduled on a machine"]


@pytest.mark.parametrize(
    ("arg", "name"),
    [
        ("hello.service", "hello.service"),
        ("unit-files/static/hello.service", "hello.service"),
        ("hello", "hello.service"),  # fleet: a bare name means NAME.service
        ("foo@5555.service", "foo@5555.service"),
        ("foo@.service", "foo@.service"),
        ("db.socket", "db.socket"),
    ],
)
def test_unit_name(arg: str, name: str) -> None:
    assert files.unit_name(arg) == name


@pytest.mark.parametrize(
    ("arg", "why"),
    [
        ("hello.txt", "unknown unit type"),
        ("..", "invalid unit name"),
        ("../", "invalid unit name"),
        ("hello world.service", "invalid character"),
        ("h%llo.service", "invalid character"),
        ("a" * 250 + ".service", "longer than 255"),
        ("@x.service", "empty prefix"),
    ],
)
def test_unit_name_rejects(arg: str, why: str) -> None:
    with pytest.raises(files.BadInput, match=why):
        files.unit_name(arg)


def test_is_global() -> None:
    assert is_global("[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n")
    assert not is_global("[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=false\n")
    assert not is_global("[Service]\nExecStart=/bin/true\n")


def test_tracker_says_what_is_still_awaited() -> None:
    t = Tracker({"hello.service": Goal.LAUNCHED})
    s = snap(TargetState.LAUNCHED, "inactive")
    t.observe(s)
    assert t.still_waiting(s) == [
        "Still waiting for hello.service to report state launched on "
        "4f4a4289.../172.17.8.101 (now loaded, inactive/x)"]
    t = Tracker({"hello.service": Goal.GONE})
    s = Snapshot(states=snap(TargetState.LOADED, "inactive").states, machines={MID: M})
    t.observe(s)
    assert t.still_waiting(s) == [
        "Still waiting for hello.service to be removed from 4f4a4289.../172.17.8.101"]


def test_tracker_names_ten_units_still_awaited_and_counts_the_rest() -> None:
    from fleetpy.ctl.wait import NOTES_SHOWN

    t = Tracker({f"u{i:02d}.service": Goal.GONE for i in range(25)})
    s = Snapshot(machines={MID: M})
    notes = t.still_waiting(s)
    assert len(notes) == NOTES_SHOWN + 1 == 11
    assert notes[0] == "Still waiting for u00.service to be removed from -"
    assert notes[-1] == "... and 15 more units"
