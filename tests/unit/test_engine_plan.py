"""Engine plan: units + machines + schedule -> puts, deletes, waiting reasons, sentences."""

from __future__ import annotations

import random
from fnmatch import fnmatchcase

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpy.engine.plan import EnginePlan, parse_spec, plan_engine
from fleetpy.model.types import Machine, ScheduledUnit, TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.model.xfleet import XFleet
from fleetpy.registry.base import UnitRecord

LAUNCHED, LOADED, INACTIVE = TargetState.LAUNCHED, TargetState.LOADED, TargetState.INACTIVE
A = "a1b2c3d4" + "0" * 24
B = "b2c3d4e5" + "1" * 24
C = "c3d4e5f6" + "2" * 24
D = "d4e5f6a7" + "3" * 24
IDS = {"a": A, "b": B, "c": C, "d": D}
SHORT = {v: k for k, v in IDS.items()}


def rec(name: str, xfleet: str = "", desired: TargetState = LAUNCHED, body: str = "") -> UnitRecord:
    text = f"[Service]\nExecStart=/bin/true{body}\n"
    if xfleet:
        text += "[X-Fleet]\n" + xfleet.replace(";", "\n") + "\n"
    return UnitRecord(unit=make_unit_file(name, text), desired=desired)


def machines(which: str, **meta: dict[str, str]) -> list[Machine]:
    return [
        Machine(id=IDS[k], public_ip=f"10.0.0.{i}", metadata=meta.get(k, {}))
        for i, k in enumerate(which)
    ]


def entry(r: UnitRecord, where: str, target: TargetState | None = None) -> ScheduledUnit:
    return ScheduledUnit(
        name=r.unit.name,
        machine_id=IDS[where],
        target=target or r.desired,
        hash=r.unit.hash,
        contents=r.unit.contents,
    )


def apply(schedule: list[ScheduledUnit], plan: EnginePlan) -> list[ScheduledUnit]:
    out = {(e.machine_id, e.name): e for e in schedule}
    for key in plan.deletes:
        out.pop(key)
    for e in plan.puts:
        out[(e.machine_id, e.name)] = e
    return list(out.values())


def layout(schedule: list[ScheduledUnit]) -> dict[str, str]:
    """unit -> machine letters (sorted, joined) of the schedule."""
    out: dict[str, list[str]] = {}
    for e in schedule:
        out.setdefault(e.name, []).append(SHORT[e.machine_id])
    return {name: "".join(sorted(ms)) for name, ms in sorted(out.items())}


HELLO = rec("hello.service")


def test_no_change_means_empty_plan() -> None:
    plan = plan_engine([HELLO], machines("ab"), [entry(HELLO, "a")])
    assert (plan.puts, plan.deletes, plan.waiting, plan.decisions) == ([], [], {}, [])


def test_waiting_reasons_cleared_and_kept() -> None:
    units = [rec("side.service", "MachineOf=db.service"), rec("db.service", desired=INACTIVE)]
    previous = {
        "side.service": "MachineOf=db.service: waiting for db.service to be scheduled",
        "gone.service": "old reason",
        "db.service": "old",
    }
    plan = plan_engine(units, machines("a"), [], previous)
    assert plan.waiting == {
        "side.service": previous["side.service"],
        "gone.service": None,
        "db.service": None,
    }
    assert plan.decisions == []
    placed = plan_engine([rec("db.service"), units[0]], machines("a"), [], previous)
    assert placed.waiting == {"side.service": None, "gone.service": None, "db.service": None}


def test_puts_and_deletes_are_whole_entries() -> None:
    plan = plan_engine([HELLO], machines("b"), [entry(HELLO, "a")])
    assert plan.deletes == [(A, "hello.service")]
    assert plan.puts == [entry(HELLO, "b")]


def test_spec_cache_reused_only_for_same_hash() -> None:
    stale = {"hello.service": (HELLO.unit.hash, XFleet(machine_id=B))}
    plan = plan_engine([HELLO], machines("ab"), [], specs=stale)
    assert layout(apply([], plan)) == {"hello.service": "b"}  # the cached spec was used
    other = {"hello.service": ("0" * 40, XFleet(machine_id=B))}
    plan = plan_engine([HELLO], machines("ab"), [], specs=other)
    assert layout(apply([], plan)) == {"hello.service": "a"}
    assert plan.specs == {"hello.service": (HELLO.unit.hash, XFleet())}


def test_parse_spec_reports_bad_contents() -> None:
    assert parse_spec("x.service", "junk") == (
        'invalid unit file "x.service": line 1: text outside a section: "junk"'
    )


def test_deterministic_whatever_the_input_order() -> None:
    units = [rec(f"n@{i}.service", "Conflicts=n@*.service") for i in range(6)]
    units += [rec(f"s@{i}.service", f"MachineOf=n@{i}.service") for i in range(6)]
    units += [rec("g.service", "Global=true"), rec("r.service", "Replaces=n@0.service")]
    ms = machines("abcd")
    schedule = [entry(units[0], "a"), entry(units[1], "d")]
    first = plan_engine(units, ms, schedule)
    rng = random.Random(7)
    for _ in range(5):
        u, m, s = list(units), list(ms), list(schedule)
        rng.shuffle(u)
        rng.shuffle(m)
        rng.shuffle(s)
        assert plan_engine(u, m, s) == first


# properties: converged after one pass, constraints hold --------------------------------
UNIT = st.tuples(
    st.sampled_from(["a@1", "a@2", "a@3", "b@1", "b@2", "c", "d"]),
    st.lists(
        st.sampled_from(
            [
                "Conflicts=a@*.service",
                "Conflicts=b*",
                "MachineOf=c.service",
                "MachineOf=a@1.service",
                "MachineMetadata=role=web",
                "Global=true",
                "Replaces=d.service",
            ]
        ),
        max_size=2,
        unique=True,
    ),
    st.sampled_from([LAUNCHED, LOADED, INACTIVE]),
)


@settings(max_examples=120, deadline=None)
@given(
    specs=st.lists(UNIT, max_size=7, unique_by=lambda u: u[0]),
    which=st.sampled_from(["a", "ab", "abc", "abcd"]),
    gone=st.sampled_from(["", "a", "b"]),
)
def test_one_pass_converges_and_respects_constraints(
    specs: list[tuple[str, list[str], TargetState]], which: str, gone: str
) -> None:
    units = [rec(f"{n}.service", ";".join(x), d) for n, x, d in specs]
    units = [u for u in units if not isinstance(parse_spec(u.unit.name, u.unit.contents), str)]
    ms = machines(which, a={"role": "web"}, c={"role": "web"})
    first = apply([], plan_engine(units, machines("abcd", a={"role": "web"}), []))
    live = [m for m in ms if SHORT[m.id] != gone]
    plan = plan_engine(units, live, first)
    after = apply(first, plan)
    again = plan_engine(
        units, live, after, {n: r for n, r in plan.waiting.items() if r}, plan.specs
    )
    assert (again.puts, again.deletes) == ([], [])
    by = {u.unit.name: parse_spec(u.unit.name, u.unit.contents) for u in units}
    live_ids = {m.id for m in live}
    on: dict[str, list[str]] = {}
    for e in after:
        assert e.machine_id in live_ids
        on.setdefault(e.machine_id, []).append(e.name)
    for _mid, names in on.items():
        for x in names:
            spec = by[x]
            assert isinstance(spec, XFleet)
            for y in names:
                if x != y:
                    assert not any(fnmatchcase(y, p) for p in spec.conflicts), (x, y)
                    assert y not in spec.replaces, (x, y)
            for target in spec.machine_of:
                assert target in names
    for u in units:
        placed = u.unit.name in {e.name for e in after}
        assert placed or u.desired == INACTIVE or plan.waiting.get(u.unit.name)


@pytest.mark.parametrize(
    "name", ["x.scope", "fleet.service", "systemd-journald.service", "-.mount", "init.scope"]
)
def test_a_unit_fleet_never_manages_waits_even_if_it_got_into_etcd(name: str) -> None:
    plan = plan_engine([rec(name)], machines("ab"), [])
    assert plan.puts == []
    reason = plan.waiting[name]
    assert reason is not None and reason.startswith(f"fleet does not manage {name}: ")
