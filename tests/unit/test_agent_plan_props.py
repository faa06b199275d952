"""Agent plan, properties: a plan applied then planned again gives nothing to do; the
rule for skipping a daemon-reload (fresh_loads, reload_avoidable)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpy.agent.plan import (
    CurrentUnit,
    DesiredUnit,
    Record,
    Task,
    fresh_loads,
    plan_agent,
    reload_avoidable,
)
from fleetpy.model.types import TargetState
from tests.unit.test_agent_plan import (
    H1,
    H2,
    LAUNCHED,
    LOADED,
    RE,
    ST,
    L,
    R,
    Records,
    S,
    U,
    cur,
    plan,
    want,
)


# convergence: applying a plan, then planning again, gives nothing to do ---------------------
def apply(
    tasks: list[Task],
    desired: dict[str, DesiredUnit],
    current: dict[str, CurrentUnit],
    record: Records,
) -> dict[str, CurrentUnit]:
    """A model of the executor and systemd (every task succeeds; starts stick)."""
    out = dict(current)
    for t in tasks:
        c = out.get(t.unit)
        if t.kind == U:
            out.pop(t.unit, None)
            record.pop(t.unit, None)
        elif t.kind == L:
            active = c.active_state if c else "inactive"
            out[t.unit] = cur(t.unit, active, desired[t.unit].hash)
        elif t.kind == S:
            out[t.unit] = cur(t.unit, "inactive", c.file_hash if c else None)
        elif t.kind == ST:
            out[t.unit] = cur(t.unit, "active", c.file_hash if c else None)
        if t.record is not None:
            record[t.unit] = t.record
    return out


NAMES = st.sampled_from(["a.service", "b.service", "c.socket", "d@1.service"])
DESIRED = st.dictionaries(
    NAMES,
    st.tuples(st.sampled_from([LOADED, LAUNCHED]), st.sampled_from([H1, H2])),
    max_size=4,
)
CURRENT = st.dictionaries(
    NAMES,
    st.tuples(
        st.sampled_from(["active", "inactive", "failed", "activating", "reloading"]),
        st.sampled_from([H1, H2, None]),
        st.sampled_from(["loaded", "not-found"]),
    ),
    max_size=4,
)
RECORD = st.dictionaries(
    NAMES,
    st.builds(Record, st.sampled_from([H1, H2]), st.sampled_from([LOADED, LAUNCHED])),
    max_size=4,
)
UP = ("active", "activating", "reloading")


@settings(max_examples=400, deadline=None)
@given(desired_spec=DESIRED, current_spec=CURRENT, record=RECORD)
def test_plan_converges(
    desired_spec: dict[str, tuple[TargetState, str]],
    current_spec: dict[str, tuple[str, str | None, str]],
    record: Records,
) -> None:
    desired = {n: want(n, t, h) for n, (t, h) in desired_spec.items()}
    current = {n: cur(n, a, h, load) for n, (a, h, load) in current_spec.items()}
    before = dict(record)
    tasks = plan_agent(desired, current, record)
    order = [t.kind for t in tasks]
    assert order == sorted(order, key=[U, L, RE, S, ST, R].index)
    for t in tasks:
        c = current.get(t.unit)
        if t.kind == ST:  # never a start of a unit that is up with its file unchanged
            assert (
                c is None
                or c.active_state not in UP
                or c.file_hash != desired[t.unit].hash
                or c.load_state == "not-found"
            )
        if t.kind == S:  # fleet stops only what it launched
            assert before.get(t.unit, Record("", LOADED)).state == LAUNCHED
    after = apply(tasks, desired, current, record)
    assert plan_agent(desired, after, record) == []
    for name, d in desired.items():
        assert after[name].file_hash == d.hash
        assert record[name].hash == d.hash
        if d.target == LAUNCHED:
            assert after[name].active_state in UP or record[name].state == LAUNCHED
        else:
            assert record[name].state == LOADED
    for name in set(after) - set(desired):
        assert after[name].file_hash is None


NEW = ("not-found", "inactive")


@pytest.mark.parametrize(
    ("before", "avoidable"),
    [
        ({"a.service": NEW, "b.service": NEW}, True),  # systemd has loaded neither
        ({"a.service": NEW, "b.service": ("loaded", "inactive")}, False),  # b: stale contents
        ({"a.service": NEW, "b.service": ("not-found", "active")}, False),  # b runs, file gone
        ({"a.service": NEW}, False),  # systemd said nothing of b
        ({"a.service": NEW, "b.service": ("bad-setting", "inactive")}, False),
    ],
)
def test_reload_avoidable_only_when_systemd_has_loaded_none(
    before: dict[str, tuple[str, str]], avoidable: bool
) -> None:
    assert reload_avoidable(["a.service", "b.service"], before) is avoidable


def test_fresh_loads_none_when_a_pass_also_unloads() -> None:
    new = plan([want("a.service")], [])
    assert fresh_loads(new) == ["a.service"]
    both = plan([want("a.service")], [cur("b.service")])
    assert U in {t.kind for t in both} and fresh_loads(both) == []
    changed = plan([want("a.service", digest=H2)], [cur("a.service")])
    assert fresh_loads(changed) == []  # a new version: unload + load
    assert fresh_loads(plan([], [])) == [] and not reload_avoidable([], {})
