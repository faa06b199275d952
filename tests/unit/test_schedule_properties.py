"""The pure scheduler's properties: its indexes against brute force, no conflict ever placed."""

from __future__ import annotations

from fnmatch import fnmatchcase

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpy.model.xfleet import XFleet
from fleetpy.schedule import Cluster, UnitSpec, decide
from tests.unit.test_schedule import A, B, C, machines

NAMES = st.sampled_from(["a.service", "ab.service", "b@1.service", "b@2.service", "c.socket"])
GLOBS = st.sampled_from(["a*", "b@*", "*.socket", "ab.service", "b@?.service", "[ab]*"])
SPECS = st.builds(
    UnitSpec,
    NAMES,
    st.builds(XFleet, conflicts=st.lists(GLOBS, max_size=2, unique=True).map(tuple)),
)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), SPECS, st.sampled_from([A, B, C])), max_size=25),
    probe=GLOBS,
)
def test_indexes_match_brute_force(ops: list[tuple[bool, UnitSpec, str]], probe: str) -> None:
    c = Cluster(machines())
    c.hosting(probe)  # cached early: must then be kept up to date
    for add, spec, mid in ops:
        if add:
            c.place(spec, mid)
        else:
            c.remove(spec.name, mid)
    want: dict[str, int] = {}
    for mid, units in c.units_on.items():
        n = sum(1 for u in units if fnmatchcase(u, probe))
        if n:
            want[mid] = n
    assert dict(c.hosting(probe)) == want
    assert list(c.by_load()) == sorted(c.units_on, key=lambda m: (len(c.units_on[m]), m))
    for pattern, per in c.declared.items():
        declaring = {
            m: sum(1 for s in u.values() if pattern in s.xfleet.conflicts)
            for m, u in c.units_on.items()
        }
        assert per == {m: n for m, n in declaring.items() if n}


def conflicting(a: UnitSpec, b: UnitSpec) -> bool:
    return any(fnmatchcase(b.name, p) for p in a.xfleet.conflicts) or any(
        fnmatchcase(a.name, p) for p in b.xfleet.conflicts
    )


UNIQUE_SPECS = st.lists(
    st.builds(
        UnitSpec,
        st.sampled_from([f"{p}@{i}.service" for p in "abc" for i in range(4)] + ["d.service"]),
        st.builds(
            XFleet, conflicts=st.lists(GLOBS | st.just("*"), max_size=2, unique=True).map(tuple)
        ),
    ),
    max_size=20,
    unique_by=lambda s: s.name,
)


@settings(max_examples=150, deadline=None)
@given(specs=UNIQUE_SPECS, n=st.integers(min_value=1, max_value=4))
def test_scheduler_never_violates_conflicts(specs: list[UnitSpec], n: int) -> None:
    c = Cluster(machines("abc"[: min(n, 3)]))
    for spec in specs:
        decision = decide(c, spec)
        if decision.machine_id is not None:
            c.place(spec, decision.machine_id)
        else:
            assert decision.reasons
    for units in c.units_on.values():
        placed = list(units.values())
        for i, x in enumerate(placed):
            for y in placed[i + 1 :]:
                assert not conflicting(x, y), (x, y)
