"""Engine plan, case by case: units + machines + schedule -> the layout after one
pass and the sentences it logs, and that planning again on the result changes
nothing. The helpers are test_engine_plan's."""

from __future__ import annotations

import pytest

from fleetpy.engine.plan import plan_engine
from fleetpy.registry.base import UnitRecord
from tests.unit.test_engine_plan import (
    HELLO,
    INACTIVE,
    LOADED,
    apply,
    entry,
    layout,
    machines,
    rec,
)

HELLO_LOADED = rec("hello.service", desired=LOADED)
HELLO_INACTIVE = rec("hello.service", desired=INACTIVE)
HELLO_V2 = rec("hello.service", body=" v2")

CASES = [
    # id, units, machines, schedule (record, machine), want layout, sentence fragments
    (
        "place a new unit",
        [HELLO],
        "ab",
        [],
        {"hello.service": "a"},
        ["scheduled hello.service on a1b2c3d4 (least loaded: 0 units)"],
    ),
    ("inactive is not placed", [HELLO_INACTIVE], "ab", [], {}, []),
    (
        "desired inactive unschedules",
        [HELLO_INACTIVE],
        "ab",
        [(HELLO, "b")],
        {},
        ["unscheduled hello.service from b2c3d4e5: desired state inactive"],
    ),
    (
        "destroyed unschedules",
        [],
        "ab",
        [(HELLO, "a")],
        {},
        ["unscheduled hello.service from a1b2c3d4: unit destroyed"],
    ),
    (
        "machine gone: unscheduled and placed again",
        [HELLO],
        "b",
        [(HELLO, "a")],
        {"hello.service": "b"},
        [
            "unscheduled hello.service from a1b2c3d4: machine gone",
            "scheduled hello.service on b2c3d4e5 (least loaded: 0 units)",
        ],
    ),
    (
        "no needless move",
        [HELLO, rec("x.service"), rec("y.service")],
        "ab",
        [(HELLO, "a"), (rec("x.service"), "a"), (rec("y.service"), "a")],
        {"hello.service": "a", "x.service": "a", "y.service": "a"},
        [],
    ),
    (
        "target changed: updated in place",
        [HELLO],
        "ab",
        [(HELLO_LOADED, "b")],
        {"hello.service": "b"},
        ["updated hello.service on b2c3d4e5: target loaded -> launched"],
    ),
    (
        "hash changed: updated in place",
        [HELLO_V2],
        "ab",
        [(HELLO, "b")],
        {"hello.service": "b"},
        [
            f"updated hello.service on b2c3d4e5: contents {HELLO.unit.hash[:7]} -> "
            f"{HELLO_V2.unit.hash[:7]}"
        ],
    ),
    (
        "machine of pair moves together",
        [rec("db.service"), rec("side.service", "MachineOf=db.service")],
        "bc",
        [(rec("db.service"), "a"), (rec("side.service", "MachineOf=db.service"), "a")],
        {"db.service": "b", "side.service": "b"},
        [
            "scheduled db.service on b2c3d4e5",
            "scheduled side.service on b2c3d4e5 (MachineOf=db.service)",
        ],
    ),
    (
        "follower sorted before its target still follows",
        [rec("zdb.service"), rec("a-side.service", "MachineOf=zdb.service")]
        + [rec(f"f{i}.service") for i in range(2)],
        "ab",
        [(rec("f0.service"), "a"), (rec("f1.service"), "a")],
        {"a-side.service": "b", "f0.service": "a", "f1.service": "a", "zdb.service": "b"},
        [],
    ),
    (
        "follower waits for its target",
        [rec("side.service", "MachineOf=db.service")],
        "ab",
        [],
        {},
        ["side.service waits: MachineOf=db.service: waiting for db.service to be scheduled"],
    ),
    (
        "five conflicting units on three machines",
        [rec(f"n@{i}.service", "Conflicts=n@*.service") for i in range(5)],
        "abc",
        [],
        {"n@0.service": "a", "n@1.service": "b", "n@2.service": "c"},
        [
            "n@3.service waits: Conflicts: n@*.service runs on every eligible machine "
            "(a1b2c3d4: n@0.service, b2c3d4e5: n@1.service, c3d4e5f6: n@2.service)",
            "n@4.service waits: Conflicts",
        ],
    ),
    (
        "placements see earlier ones",
        [rec(f"u{i}.service") for i in range(4)],
        "ab",
        [],
        {"u0.service": "a", "u1.service": "b", "u2.service": "a", "u3.service": "b"},
        [],
    ),
    (
        "global on every machine",
        [rec("g.service", "Global=true")],
        "abc",
        [],
        {"g.service": "abc"},
        ["scheduled g.service on 3 machines (global): a1b2c3d4, b2c3d4e5, c3d4e5f6"],
    ),
    (
        "global on a joining machine",
        [rec("g.service", "Global=true")],
        "abc",
        [(rec("g.service", "Global=true"), "a"), (rec("g.service", "Global=true"), "b")],
        {"g.service": "abc"},
        ["scheduled g.service on 1 machine (global): c3d4e5f6"],
    ),
    (
        "global leaves a machine gone",
        [rec("g.service", "Global=true")],
        "a",
        [(rec("g.service", "Global=true"), "a"), (rec("g.service", "Global=true"), "b")],
        {"g.service": "a"},
        ["unscheduled g.service from b2c3d4e5: machine gone"],
    ),
    (
        "global metadata",
        [rec("g.service", "Global=true;MachineMetadata=role=web")],
        "abc",
        [],
        {"g.service": "ac"},
        [],
    ),
    (
        "global matching nothing waits",
        [rec("g.service", "Global=true;MachineMetadata=role=db")],
        "abc",
        [],
        {},
        ["g.service waits: no machine matches MachineMetadata role=db"],
    ),
    (
        "metadata changed on the machine: moves",
        [rec("w.service", "MachineMetadata=role=web")],
        "abc",
        [(rec("w.service", "MachineMetadata=role=web"), "b")],
        {"w.service": "a"},
        [
            "unscheduled w.service from b2c3d4e5: machine does not match MachineMetadata role=web",
            "scheduled w.service on a1b2c3d4",
        ],
    ),
    (
        "new conflict: first by name moves",
        [rec("p.service", "Conflicts=q.service"), rec("q.service")],
        "ab",
        [(rec("p.service"), "a"), (rec("q.service"), "a")],
        {"p.service": "b", "q.service": "a"},
        [
            "unscheduled p.service from a1b2c3d4: "
            "Conflicts=q.service matches q.service on this machine"
        ],
    ),
    (
        "replaces takes the place and moves the old unit",
        [rec("old.service"), rec("new.service", "Replaces=old.service")],
        "ab",
        [(rec("old.service"), "a")],
        {"new.service": "a", "old.service": "b"},
        [
            "unscheduled old.service from a1b2c3d4: replaced by new.service",
            "scheduled new.service on a1b2c3d4 (replaces old.service)",
            "scheduled old.service on b2c3d4e5",
        ],
    ),
    (
        "replaced unit with nowhere to go waits",
        [rec("old.service"), rec("new.service", "Replaces=old.service")],
        "a",
        [(rec("old.service"), "a")],
        {"new.service": "a"},
        [
            "old.service waits: Conflicts: a conflicting unit runs on every eligible machine "
            "(a1b2c3d4: new.service (replaces old.service))"
        ],
    ),
    (
        "template waits",
        [rec("t@.service")],
        "a",
        [],
        {},
        ["t@.service waits: t@.service is a template: start an instance such as t@1.service"],
    ),
    (
        # the first "@" decides, as in systemd: an instance of t@.service whose instance is "a@"
        "an instance whose instance ends in @ is placed",
        [rec("t@a@.service")],
        "a",
        [],
        {"t@a@.service": "a"},
        ["scheduled t@a@.service on a1b2c3d4 (least loaded: 0 units)"],
    ),
    (
        "invalid x-fleet waits and leaves",
        [rec("bad.service", "MachineID=x;Global=true")],
        "a",
        [(rec("bad.service"), "a")],
        {},
        [
            'unscheduled bad.service from a1b2c3d4: invalid [X-Fleet] in "bad.service": MachineID '
            "cannot be combined with Global=true",
            "bad.service waits: invalid [X-Fleet]",
        ],
    ),
    (
        "duplicate entry of a non-global unit",
        [HELLO],
        "ab",
        [(HELLO, "a"), (HELLO, "b")],
        {"hello.service": "a"},
        ["unscheduled hello.service from b2c3d4e5: duplicate entry"],
    ),
    (
        "machine id",
        [rec("pin.service", "MachineID=c3d4e5f6")],
        "abc",
        [],
        {"pin.service": "c"},
        ["scheduled pin.service on c3d4e5f6 (MachineID=c3d4e5f6)"],
    ),
    ("no machines", [HELLO], "", [], {}, ["hello.service waits: no machines in the cluster"]),
]


@pytest.mark.parametrize(
    ("units", "which", "schedule", "want", "sentences"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan_engine(
    units: list[UnitRecord],
    which: str,
    schedule: list[tuple[UnitRecord, str]],
    want: dict[str, str],
    sentences: list[str],
) -> None:
    current = [entry(r, m) for r, m in schedule]
    ms = machines(which, a={"role": "web"}, c={"role": "web"})
    plan = plan_engine(units, ms, current)
    after = apply(current, plan)
    assert layout(after) == want
    for fragment in sentences:
        assert any(fragment in d for d in plan.decisions), (fragment, plan.decisions)
    for e in after:
        r = next(u for u in units if u.unit.name == e.name)
        assert (e.target, e.hash, e.contents) == (r.desired, r.unit.hash, r.unit.contents)
    # planning again on the result changes nothing and announces nothing new
    waiting = {n: r for n, r in plan.waiting.items() if r is not None}
    again = plan_engine(units, ms, after, waiting, plan.specs)
    assert (again.puts, again.deletes, again.decisions) == ([], [], [])
    assert again.waiting == waiting
