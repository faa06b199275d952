"""The pure scheduler: every constraint, combinations, reasons, indexes, properties."""

from __future__ import annotations

import pytest

from fleetpy.model.types import Machine
from fleetpy.model.xfleet import XFleet
from fleetpy.schedule import Cluster, Decision, UnitSpec, decide

A = "a1b2c3d4" + "0" * 24
B = "b2c3d4e5" + "1" * 24
C = "c3d4e5f6" + "2" * 24
IDS = {"a": A, "b": B, "c": C}
META = {"a": {"region": "us-west"}, "b": {"region": "us-east", "disk": "ssd"}, "c": {}}


def machines(which: str = "abc") -> list[Machine]:
    return [
        Machine(id=IDS[k], public_ip=f"10.0.0.{i}", metadata=META[k]) for i, k in enumerate(which)
    ]


def cluster(placed: list[tuple[str, XFleet, str]], which: str = "abc") -> Cluster:
    return Cluster(machines(which), [(UnitSpec(n, x), IDS[m]) for n, x, m in placed])


def filler(machine: str, count: int, prefix: str = "f") -> list[tuple[str, XFleet, str]]:
    return [(f"{prefix}{machine}{i}.service", XFleet(), machine) for i in range(count)]


def where(decision: Decision) -> str | None:
    rev = {v: k for k, v in IDS.items()}
    return None if decision.machine_id is None else rev[decision.machine_id]


DECIDE = [
    # id, placed, unit name, xfleet, machines, want machine, want basis / reason fragment
    ("empty cluster", [], "x.service", XFleet(), "", None, "no machines in the cluster"),
    (
        "least loaded",
        filler("a", 2) + filler("c", 1),
        "x.service",
        XFleet(),
        "abc",
        "b",
        "least loaded: 0 units",
    ),
    ("tie by machine id", [], "x.service", XFleet(), "cba", "a", "least loaded: 0 units"),
    (
        "one unit basis",
        filler("a", 1) + filler("b", 1) + filler("c", 2),
        "x.service",
        XFleet(),
        "abc",
        "a",
        "least loaded: 1 unit",
    ),
    (
        "global units count in load",
        [("g.service", XFleet(is_global=True), "a"), ("g.service", XFleet(is_global=True), "b")],
        "x.service",
        XFleet(),
        "abc",
        "c",
        "least loaded: 0 units",
    ),
    (
        "machine id full",
        filler("b", 5),
        "x.service",
        XFleet(machine_id=B),
        "abc",
        "b",
        f"MachineID={B}",
    ),
    (
        "machine id short",
        filler("b", 5),
        "x.service",
        XFleet(machine_id="b2c3d4e5"),
        "abc",
        "b",
        "MachineID=b2c3d4e5",
    ),
    (
        "machine id other prefix length",
        [],
        "x.service",
        XFleet(machine_id="b2c3"),
        "abc",
        None,
        "MachineID=b2c3: no such machine among 3 machines",
    ),
    (
        "machine id unknown",
        [],
        "x.service",
        XFleet(machine_id="ffffffff"),
        "abc",
        None,
        "MachineID=ffffffff: no such machine",
    ),
    (
        "machine id + metadata mismatch",
        [],
        "x.service",
        XFleet(machine_id=A, machine_metadata=(("region", ("us-east",)),)),
        "abc",
        None,
        "no machine matches MachineMetadata region=us-east (1 machine: a1b2c3d4 region=us-west)",
    ),
    (
        "machine of",
        [("db.service", XFleet(), "c"), *filler("c", 3)],
        "x.service",
        XFleet(machine_of=("db.service",)),
        "abc",
        "c",
        "MachineOf=db.service",
    ),
    (
        "machine of not scheduled waits",
        [],
        "x.service",
        XFleet(machine_of=("db.service",)),
        "abc",
        None,
        "MachineOf=db.service: waiting for db.service to be scheduled",
    ),
    (
        "machine of two targets together",
        [("db.service", XFleet(), "b"), ("cache.service", XFleet(), "b")],
        "x.service",
        XFleet(machine_of=("db.service", "cache.service")),
        "abc",
        "b",
        "MachineOf=",
    ),
    (
        "machine of two targets apart",
        [("db.service", XFleet(), "a"), ("cache.service", XFleet(), "b")],
        "x.service",
        XFleet(machine_of=("db.service", "cache.service")),
        "abc",
        None,
        "MachineOf: no machine hosts them all (db.service on a1b2c3d4; cache.service on b2c3d4e5)",
    ),
    (
        "machine of global target picks least loaded host",
        [("g.service", XFleet(is_global=True), m) for m in "abc"] + filler("a", 2),
        "x.service",
        XFleet(machine_of=("g.service",)),
        "abc",
        "b",
        "MachineOf=g.service",
    ),
    (
        "machine of + metadata mismatch",
        [("db.service", XFleet(), "a")],
        "x.service",
        XFleet(machine_of=("db.service",), machine_metadata=(("region", ("us-east",)),)),
        "abc",
        None,
        "no machine matches MachineMetadata region=us-east (1 machine: a1b2c3d4",
    ),
    (
        "machine of + conflict on target machine",
        [("db.service", XFleet(), "a"), ("web1.service", XFleet(), "a")],
        "web2.service",
        XFleet(machine_of=("db.service",), conflicts=("web*",)),
        "abc",
        None,
        "Conflicts: web* runs on every eligible machine (a1b2c3d4: web1.service)",
    ),
    (
        "metadata",
        [],
        "x.service",
        XFleet(machine_metadata=(("region", ("us-east",)),)),
        "abc",
        "b",
        "least loaded",
    ),
    (
        "metadata OR",
        filler("b", 1),
        "x.service",
        XFleet(machine_metadata=(("region", ("us-east", "us-west")),)),
        "abc",
        "a",
        "least loaded",
    ),
    (
        "metadata AND",
        [],
        "x.service",
        XFleet(machine_metadata=(("disk", ("ssd",)), ("region", ("us-west",)))),
        "abc",
        None,
        "no machine matches MachineMetadata disk=ssd region=us-west (3 machines: a1b2c3d4 "
        "region=us-west, b2c3d4e5 disk=ssd,region=us-east, c3d4e5f6 no metadata)",
    ),
    (
        "conflicts own glob",
        [("nginx@1.service", XFleet(), "a")],
        "nginx@2.service",
        XFleet(conflicts=("nginx@*.service",)),
        "ab",
        "b",
        "least loaded",
    ),
    (
        "conflicts own literal",
        [("db.service", XFleet(), "a")],
        "x.service",
        XFleet(conflicts=("db.service",)),
        "ab",
        "b",
        "least loaded",
    ),
    (
        "conflicts other direction",
        [("web.service", XFleet(conflicts=("nginx*",)), "a")],
        "nginx@2.service",
        XFleet(),
        "ab",
        "b",
        "least loaded",
    ),
    (
        "conflicts own name ignored",
        [],
        "nginx@1.service",
        XFleet(conflicts=("nginx@*.service",)),
        "a",
        "a",
        "least loaded",
    ),
    (
        "conflicts own glob everywhere",
        [("nginx@1.service", XFleet(), "a"), ("nginx@3.service", XFleet(), "b")],
        "nginx@2.service",
        XFleet(conflicts=("nginx@*.service",)),
        "ab",
        None,
        "Conflicts: nginx@*.service runs on every eligible machine (a1b2c3d4: nginx@1.service, "
        "b2c3d4e5: nginx@3.service)",
    ),
    (
        "conflicts other direction everywhere",
        [("web.service", XFleet(conflicts=("nginx*",)), "a"), ("nginx@1.service", XFleet(), "b")],
        "nginx@2.service",
        XFleet(conflicts=("nginx@*.service",)),
        "ab",
        None,
        "Conflicts: a conflicting unit runs on every eligible machine (a1b2c3d4: web.service "
        "(its Conflicts=nginx*), b2c3d4e5: nginx@1.service)",
    ),
    (
        "conflicts only where metadata matches",
        [("nginx@1.service", XFleet(), "b")],
        "nginx@2.service",
        XFleet(conflicts=("nginx@*.service",), machine_metadata=(("region", ("us-east",)),)),
        "abc",
        None,
        "Conflicts: nginx@*.service runs on every eligible machine (b2c3d4e5",
    ),
    (
        "conflicts pick next least loaded",
        [("nginx@1.service", XFleet(), "a"), *filler("c", 1), *filler("b", 2)],
        "nginx@2.service",
        XFleet(conflicts=("nginx@*.service",)),
        "abc",
        "c",
        "least loaded: 1 unit",
    ),
    (
        "replaces prefers the replaced unit's machine",
        [("old.service", XFleet(), "a"), *filler("a", 3)],
        "new.service",
        XFleet(replaces=("old.service",)),
        "abc",
        "a",
        "replaces old.service",
    ),
    (
        "replaces unscheduled target: least loaded",
        filler("a", 1),
        "new.service",
        XFleet(replaces=("old.service",)),
        "ab",
        "b",
        "least loaded: 0 units",
    ),
    (
        "replaced unit avoids its replacer",
        [("new.service", XFleet(replaces=("old.service",)), "a")],
        "old.service",
        XFleet(),
        "ab",
        "b",
        "least loaded: 0 units",
    ),
    (
        "replaced unit with nowhere to go",
        [("new.service", XFleet(replaces=("old.service",)), "a")],
        "old.service",
        XFleet(),
        "a",
        None,
        "a1b2c3d4: new.service (replaces old.service)",
    ),
    (
        "replaces + metadata elsewhere",
        [("old.service", XFleet(), "a")],
        "new.service",
        XFleet(replaces=("old.service",), machine_metadata=(("region", ("us-east",)),)),
        "abc",
        "b",
        "least loaded",
    ),
]


@pytest.mark.parametrize(
    ("placed", "name", "spec", "which", "want", "text"),
    [d[1:] for d in DECIDE],
    ids=[d[0] for d in DECIDE],
)
def test_decide(
    placed: list[tuple[str, XFleet, str]],
    name: str,
    spec: XFleet,
    which: str,
    want: str | None,
    text: str,
) -> None:
    decision = decide(cluster(placed, which), UnitSpec(name, spec))
    assert where(decision) == want
    if want is None:
        assert decision.reasons
        assert text in "; ".join(decision.reasons)
    else:
        assert decision.reasons == ()
        assert text in decision.basis


def test_reasons_name_each_constraint_that_narrowed_the_choice() -> None:
    c = cluster([("nginx@1.service", XFleet(), "a"), ("nginx@2.service", XFleet(), "b")])
    region = (("region", ("us-east", "us-west")),)
    spec = XFleet(conflicts=("nginx@*.service",), machine_metadata=region)
    assert decide(c, UnitSpec("nginx@3.service", spec)).reasons == (
        "MachineMetadata region=us-east|us-west: 2 of 3 machines match (a1b2c3d4, b2c3d4e5)",
        "Conflicts: nginx@*.service runs on every eligible machine (a1b2c3d4: nginx@1.service, "
        "b2c3d4e5: nginx@2.service)",
    )
    follower = XFleet(machine_of=("nginx@1.service",), machine_metadata=(("disk", ("ssd",)),))
    assert decide(c, UnitSpec("side.service", follower)).reasons == (
        "MachineOf=nginx@1.service: only a1b2c3d4",
        "no machine matches MachineMetadata disk=ssd (1 machine: a1b2c3d4 region=us-west)",
    )


def test_replaces_returns_displaced_units() -> None:
    c = cluster([("old.service", XFleet(), "a")])
    decision = decide(c, UnitSpec("new.service", XFleet(replaces=("old.service", "gone.service"))))
    assert decision.displace == ("old.service",)


def test_machine_of_missing_targets_each_named() -> None:
    decision = decide(
        cluster([]), UnitSpec("x.service", XFleet(machine_of=("a.service", "b.service")))
    )
    assert decision.reasons == (
        "MachineOf=a.service: waiting for a.service to be scheduled",
        "MachineOf=b.service: waiting for b.service to be scheduled",
    )


def test_many_blocked_machines_are_summarised() -> None:
    ids = [f"{i:08x}" + "0" * 24 for i in range(8)]
    c = Cluster(
        [Machine(id=mid, public_ip="10.0.0.1") for mid in ids],
        [(UnitSpec(f"n@{i}.service"), mid) for i, mid in enumerate(ids)],
    )
    (reason,) = decide(c, UnitSpec("n@x.service", XFleet(conflicts=("n@*",)))).reasons
    assert reason.endswith("00000004: n@4.service, ... 3 more)")


def test_decide_does_not_change_the_cluster() -> None:
    c = cluster([("old.service", XFleet(), "a")])
    before = (dict(c.load), {m: dict(u) for m, u in c.units_on.items()})
    decide(c, UnitSpec("new.service", XFleet(replaces=("old.service",))))
    assert (dict(c.load), {m: dict(u) for m, u in c.units_on.items()}) == before
