"""MachineOf cycles: found, named, and kept waiting by the engine plan."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpy.engine.plan import plan_engine
from fleetpy.model.xfleet import XFleet
from fleetpy.schedule.cycles import machine_of_cycles
from tests.unit.test_engine_plan import INACTIVE, apply, entry, layout, machines, rec


def graph(edges: dict[str, str]) -> dict[str, XFleet]:
    """``{"a": "b c"}``: a.service MachineOf b.service and c.service."""
    return {
        f"{n}.service": XFleet(machine_of=tuple(f"{t}.service" for t in ts.split()))
        for n, ts in edges.items()
    }


def cyc(*names: str) -> str:
    return "MachineOf cycle: " + " -> ".join(f"{n}.service" for n in names)


CASES = [
    ("none", {"a": "", "b": "a", "c": "b"}, {}),
    ("target missing", {"a": "x"}, {}),
    ("pair", {"a": "b", "b": "a"}, {"a": cyc("a", "b", "a"), "b": cyc("a", "b", "a")}),
    ("three", {"c": "a", "a": "b", "b": "c"}, {n: cyc("a", "b", "c", "a") for n in "abc"}),
    ("self", {"a": "a"}, {"a": cyc("a", "a")}),
    ("follower of a cycle is not on it", {"a": "b", "b": "a", "f": "a"},
     {"a": cyc("a", "b", "a"), "b": cyc("a", "b", "a")}),
    ("cycle reached from a follower", {"f": "x", "x": "y", "y": "x"},
     {"x": cyc("x", "y", "x"), "y": cyc("x", "y", "x")}),
    ("two cycles", {"a": "b", "b": "a", "c": "d", "d": "c", "e": "a c"},
     {"a": cyc("a", "b", "a"), "b": cyc("a", "b", "a"),
      "c": cyc("c", "d", "c"), "d": cyc("c", "d", "c")}),
    ("shortest through the first", {"a": "b c", "b": "c", "c": "a"},
     {n: cyc("a", "c", "a") for n in "abc"}),
    ("diamond without a cycle", {"a": "b c", "b": "d", "c": "d", "d": ""}, {}),
]


@pytest.mark.parametrize(("edges", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cycles_named(edges: dict[str, str], want: dict[str, str]) -> None:
    assert machine_of_cycles(graph(edges)) == {f"{n}.service": r for n, r in want.items()}


def test_a_long_chain_needs_no_recursion() -> None:
    n = 5000
    edges = {f"u{i}": f"u{i + 1}" for i in range(n)} | {f"u{n}": "u0"}
    found = machine_of_cycles(graph(edges))
    assert len(found) == n + 1
    assert found["u0.service"].startswith("MachineOf cycle: u0.service -> u1.service -> ")
    assert found["u0.service"].endswith(f"u{n}.service -> u0.service")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"),
                       st.lists(st.sampled_from("abcdefx"), max_size=3), max_size=6))
def test_exactly_the_units_on_a_cycle_are_named(edges: dict[str, list[str]]) -> None:
    specs = graph({n: " ".join(ts) for n, ts in edges.items()})
    found = machine_of_cycles(specs)

    def reaches(src: str, dst: str) -> bool:
        seen, todo = set(), [src]
        while todo:
            for t in specs[todo.pop()].machine_of:
                if t == dst:
                    return True
                if t in specs and t not in seen:
                    seen.add(t)
                    todo.append(t)
        return False

    assert set(found) == {n for n in specs if reaches(n, n)}
    for name, reason in found.items():
        path = reason.removeprefix("MachineOf cycle: ").split(" -> ")
        assert path[0] == path[-1] and len(path) >= 2
        assert all(b in specs[a].machine_of for a, b in pairwise(path))
        assert reaches(name, path[0]) and reaches(path[0], name)  # one component


def test_engine_plan_names_the_cycle_and_places_the_rest() -> None:
    a, b = rec("a.service", "MachineOf=b.service"), rec("b.service", "MachineOf=a.service")
    side = rec("side.service", "MachineOf=a.service")
    plan = plan_engine([a, b, side, rec("ok.service")], machines("ab"), [])
    reason = "MachineOf cycle: a.service -> b.service -> a.service"
    assert plan.waiting == {
        "a.service": reason,
        "b.service": reason,
        "side.service": "MachineOf=a.service: waiting for a.service to be scheduled",
    }
    assert layout(apply([], plan)) == {"ok.service": "a"}
    assert f"a.service waits: {reason}" in plan.decisions
    again = plan_engine([a, b, side, rec("ok.service")], machines("ab"), apply([], plan),
                        {n: r for n, r in plan.waiting.items() if r}, plan.specs)
    assert (again.puts, again.deletes, again.decisions) == ([], [], [])


def test_a_longer_cycle_leaves_the_schedule_with_its_reason() -> None:
    units = [rec("x.service", "MachineOf=y.service"), rec("y.service", "MachineOf=z.service"),
             rec("z.service", "MachineOf=x.service")]
    placed = [entry(u, "a") for u in units]
    plan = plan_engine(units, machines("a"), placed)
    reason = "MachineOf cycle: x.service -> y.service -> z.service -> x.service"
    assert plan.waiting == {n: reason for n in ("x.service", "y.service", "z.service")}
    assert sorted(plan.deletes) == sorted((e.machine_id, e.name) for e in placed)
    assert f"unscheduled x.service from a1b2c3d4: {reason}" in plan.decisions


def test_an_inactive_member_still_names_the_cycle() -> None:
    a = rec("a.service", "MachineOf=b.service")
    b = rec("b.service", "MachineOf=a.service", desired=INACTIVE)
    plan = plan_engine([a, b], machines("a"), [])
    assert plan.waiting == {"a.service": "MachineOf cycle: a.service -> b.service -> a.service"}
