"""fleetctl and units no machine can take: list-unit-files rows, start order (pure)."""

from __future__ import annotations

import json

import pytest

from fleetpy.api.snapshot import Snapshot
from fleetpy.ctl.actions import machine_of_waves
from fleetpy.ctl.files import BadInput
from fleetpy.ctl.lists import unit_file_rows
from fleetpy.ctl.locate import unit_machines
from fleetpy.ctl.render import render
from fleetpy.model.types import Machine, ScheduledUnit, TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.base import UnitRecord

M = Machine("4f4a4289a8f24d0ab6d1b6a5e2f6a001", "172.17.8.101")
REASON = ("Conflicts: nginx@*.service runs on every eligible machine "
          "(4f4a4289: nginx@5555.service)")


def record(name: str, xfleet: str = "", desired: TargetState = TargetState.LAUNCHED) -> UnitRecord:
    text = "[Service]\nExecStart=/bin/true\n" + (f"[X-Fleet]\n{xfleet}\n" if xfleet else "")
    return UnitRecord(make_unit_file(name, text), desired)


def cluster() -> Snapshot:
    placed = record("nginx@5555.service", "Conflicts=nginx@*.service")
    units = {
        "nginx@5555.service": placed,
        "nginx@6666.service": record("nginx@6666.service", "Conflicts=nginx@*.service"),
        "g.service": record("g.service", "Global=true\nMachineMetadata=role=none"),
        "off.service": record("off.service", desired=TargetState.INACTIVE),
    }
    entry = ScheduledUnit("nginx@5555.service", M.id, TargetState.LAUNCHED, placed.unit.hash, "")
    return Snapshot(
        units=units,
        schedule=(entry,),
        waiting={"nginx@6666.service": REASON, "g.service": "no machine matches MachineMetadata"},
        machines={M.id: M},
    )


def test_waiting_units_show_state_waiting_target_none_and_a_reason() -> None:
    rows = {r["unit"]: r for r in unit_file_rows(cluster(), full=False)}
    assert (rows["nginx@6666.service"]["state"], rows["nginx@6666.service"]["target"],
            rows["nginx@6666.service"]["reason"]) == ("waiting", None, REASON)
    assert (rows["g.service"]["state"], rows["g.service"]["target"]) == ("waiting", "global")
    assert rows["nginx@5555.service"]["reason"] is None
    assert rows["off.service"]["state"] == "inactive"
    table = render(["unit", "dstate", "state", "target"],
                   [rows[n] for n in sorted(rows)], output="plain", legend=True)
    assert [line.split() for line in table.splitlines()] == [
        ["UNIT", "DSTATE", "STATE", "TARGET"],
        ["g.service", "launched", "waiting", "global"],
        ["nginx@5555.service", "launched", "inactive", "4f4a4289.../172.17.8.101"],
        ["nginx@6666.service", "launched", "waiting", "-"],
        ["off.service", "inactive", "inactive", "-"],
    ]
    as_json = json.loads(render(["unit", "reason"], [rows["nginx@6666.service"]], output="json",
                                legend=True))
    assert as_json == [{"unit": "nginx@6666.service", "reason": REASON}]


def test_followers_are_raised_after_the_units_they_follow() -> None:
    records = {
        "nginx-discovery@1.service": record("nginx-discovery@1.service",
                                            "MachineOf=nginx@%i.service"),
        "nginx@1.service": record("nginx@1.service"),
        "side.service": record("side.service", "MachineOf=nginx-discovery@1.service"),
        "free.service": record("free.service", "MachineOf=elsewhere.service"),
        "loop-a.service": record("loop-a.service", "MachineOf=loop-b.service"),
        "loop-b.service": record("loop-b.service", "MachineOf=loop-a.service"),
    }
    assert machine_of_waves(records) == [
        ["nginx@1.service", "free.service"],
        ["nginx-discovery@1.service"],
        ["side.service"],
        ["loop-a.service", "loop-b.service"],
    ]


def test_status_of_a_waiting_unit_says_why() -> None:
    for verb in ("status", "journal"):
        with pytest.raises(BadInput, match=r"^Unit nginx@6666.service is waiting to be "
                                           r"scheduled: Conflicts: nginx@\*.service runs"):
            unit_machines("nginx@6666.service", cluster(), verb)
