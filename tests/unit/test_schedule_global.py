"""The pure scheduler: Global units' machines, and violations of a placed unit."""

from __future__ import annotations

import pytest

from fleetpy.model.xfleet import XFleet
from fleetpy.schedule import UnitSpec, decide_global, violations
from tests.unit.test_schedule import IDS, B, cluster

GLOBAL = [
    ("everywhere", [], XFleet(is_global=True), "abc"),
    (
        "metadata",
        [],
        XFleet(is_global=True, machine_metadata=(("region", ("us-east", "us-west")),)),
        "ab",
    ),
    (
        "conflict keeps it away",
        [("db.service", XFleet(), "b")],
        XFleet(is_global=True, conflicts=("db.service",)),
        "ac",
    ),
    (
        "other unit's conflict keeps it away",
        [("db.service", XFleet(conflicts=("g.*",)), "c")],
        XFleet(is_global=True),
        "ab",
    ),
    (
        "already placed kept",
        [("g.service", XFleet(is_global=True), "a"), ("db.service", XFleet(), "a")],
        XFleet(is_global=True, conflicts=("x*",)),
        "abc",
    ),
    ("no machine matches", [], XFleet(is_global=True, machine_metadata=(("k", ("v",)),)), ""),
]


@pytest.mark.parametrize(
    ("placed", "spec", "want"), [g[1:] for g in GLOBAL], ids=[g[0] for g in GLOBAL]
)
def test_decide_global(placed: list[tuple[str, XFleet, str]], spec: XFleet, want: str) -> None:
    assert decide_global(cluster(placed), UnitSpec("g.service", spec)) == tuple(
        IDS[k] for k in want
    )


VIOLATIONS = [
    ("fine", [("x.service", XFleet(conflicts=("x*",)), "a")], XFleet(conflicts=("x*",)), "a", ()),
    ("machine gone", [], XFleet(), "gone", ("machine gone",)),
    (
        "machine id elsewhere",
        [],
        XFleet(machine_id=B),
        "a",
        (f"MachineID={B} names another machine",),
    ),
    ("machine id short here", [], XFleet(machine_id="a1b2c3d4"), "a", ()),
    (
        "machine of moved",
        [("db.service", XFleet(), "b")],
        XFleet(machine_of=("db.service",)),
        "a",
        ("MachineOf=db.service: db.service is not on this machine",),
    ),
    (
        "metadata",
        [],
        XFleet(machine_metadata=(("region", ("us-east",)),)),
        "a",
        ("machine does not match MachineMetadata region=us-east",),
    ),
    (
        "own conflict",
        [("y.service", XFleet(), "a"), ("x.service", XFleet(conflicts=("y*",)), "a")],
        XFleet(conflicts=("y*",)),
        "a",
        ("Conflicts=y* matches y.service on this machine",),
    ),
    (
        "their conflict",
        [("y.service", XFleet(conflicts=("x*",)), "a"), ("x.service", XFleet(), "a")],
        XFleet(),
        "a",
        ("y.service on this machine has Conflicts=x*",),
    ),
    (
        "replaced",
        [("r.service", XFleet(replaces=("x.service",)), "a"), ("x.service", XFleet(), "a")],
        XFleet(),
        "a",
        ("replaced by r.service",),
    ),
    (
        "replacer itself is fine",
        [("x.service", XFleet(replaces=("o.service",)), "a"), ("o.service", XFleet(), "a")],
        XFleet(replaces=("o.service",)),
        "a",
        (),
    ),
]


@pytest.mark.parametrize(
    ("placed", "spec", "machine", "want"),
    [v[1:] for v in VIOLATIONS],
    ids=[v[0] for v in VIOLATIONS],
)
def test_violations(
    placed: list[tuple[str, XFleet, str]], spec: XFleet, machine: str, want: tuple[str, ...]
) -> None:
    c = cluster(placed)
    assert violations(c, UnitSpec("x.service", spec), IDS.get(machine, machine)) == want
