"""Agent plan: desired schedule + systemd's view -> ordered tasks with reasons."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpy.agent.plan import CurrentUnit, DesiredUnit, Task, TaskKind, plan_agent
from fleetpy.model.types import TargetState

LOADED, LAUNCHED = TargetState.LOADED, TargetState.LAUNCHED
H1, H2 = "1" * 40, "2" * 40
U, L, RE, S, ST = TaskKind.UNLOAD, TaskKind.LOAD, TaskKind.RELOAD, TaskKind.STOP, TaskKind.START


def want(name: str, target: TargetState = LAUNCHED, digest: str = H1) -> DesiredUnit:
    return DesiredUnit(name=name, hash=digest, target=target, contents=f"[Service]\n# {digest}\n")


def cur(
    name: str, active: str = "active", digest: str | None = H1, load: str = "loaded"
) -> CurrentUnit:
    sub = {"active": "running", "inactive": "dead", "failed": "failed"}.get(active, active)
    return CurrentUnit(
        name=name, file_hash=digest, load_state=load, active_state=active, sub_state=sub
    )


def plan(
    desired: list[DesiredUnit],
    current: list[CurrentUnit],
    attempted: dict[str, tuple[str, TargetState]] | None = None,
) -> list[Task]:
    return plan_agent({d.name: d for d in desired}, {c.name: c for c in current}, attempted or {})


def kinds(tasks: list[Task]) -> list[tuple[TaskKind, str]]:
    return [(t.kind, t.unit) for t in tasks]


CASES = [
    ("nothing", [], [], None, []),
    ("converged launched", [want("a.service")], [cur("a.service")], None, []),
    ("converged loaded", [want("a.service", LOADED)], [cur("a.service", "inactive")], None, []),
    (
        "fresh launched",
        [want("a.service")],
        [],
        None,
        [(L, "a.service"), (RE, ""), (ST, "a.service")],
    ),
    ("fresh loaded", [want("a.service", LOADED)], [], None, [(L, "a.service"), (RE, "")]),
    (
        "loaded -> launched",
        [want("a.service")],
        [cur("a.service", "inactive")],
        None,
        [(ST, "a.service")],
    ),
    (
        "launched -> loaded",
        [want("a.service", LOADED)],
        [cur("a.service")],
        None,
        [(S, "a.service")],
    ),
    (
        "stop an activating unit",
        [want("a.service", LOADED)],
        [cur("a.service", "activating")],
        None,
        [(S, "a.service")],
    ),
    ("not scheduled here", [], [cur("a.service")], None, [(U, "a.service"), (RE, "")]),
    (
        "systemd forgot a stopped unit",
        [],
        [cur("a.service", "inactive", load="not-found")],
        None,
        [(U, "a.service"), (RE, "")],
    ),
    ("no file, not scheduled: nothing", [], [cur("a.service", "inactive", digest=None)], None, []),
    (
        "desired inactive entry unloads",
        [want("a.service", TargetState.INACTIVE)],
        [cur("a.service")],
        None,
        [(U, "a.service"), (RE, "")],
    ),
    (
        "hash changed launched",
        [want("a.service", digest=H2)],
        [cur("a.service")],
        None,
        [(U, "a.service"), (L, "a.service"), (RE, ""), (ST, "a.service")],
    ),
    (
        "hash changed loaded",
        [want("a.service", LOADED, H2)],
        [cur("a.service")],
        None,
        [(U, "a.service"), (L, "a.service"), (RE, "")],
    ),
    (
        "hash changed starts despite attempted",
        [want("a.service", digest=H2)],
        [cur("a.service", "failed")],
        {"a.service": (H2, LAUNCHED)},
        [(U, "a.service"), (L, "a.service"), (RE, ""), (ST, "a.service")],
    ),
    (
        "fleetd restarted: healthy units untouched",
        [want("a.service"), want("b.service"), want("c.service", LOADED)],
        [cur("a.service"), cur("b.service", "reloading"), cur("c.service", "inactive")],
        None,
        [],
    ),
    (
        "activating is not started again",
        [want("a.service")],
        [cur("a.service", "activating")],
        None,
        [],
    ),
    (
        "deactivating is left alone",
        [want("a.service")],
        [cur("a.service", "deactivating")],
        None,
        [],
    ),
    (
        "failed, never attempted: start",
        [want("a.service")],
        [cur("a.service", "failed")],
        None,
        [(ST, "a.service")],
    ),
    (
        "failed after our start: no crash loop",
        [want("a.service")],
        [cur("a.service", "failed")],
        {"a.service": (H1, LAUNCHED)},
        [],
    ),
    (
        "inactive after our start: no crash loop",
        [want("a.service")],
        [cur("a.service", "inactive")],
        {"a.service": (H1, LAUNCHED)},
        [],
    ),
    (
        "attempted older hash: start",
        [want("a.service")],
        [cur("a.service", "failed")],
        {"a.service": (H2, LAUNCHED)},
        [(ST, "a.service")],
    ),
    (
        "attempted other target: start",
        [want("a.service")],
        [cur("a.service", "failed")],
        {"a.service": (H1, LOADED)},
        [(ST, "a.service")],
    ),
    (
        "file missing, unit running: load only",
        [want("a.service")],
        [cur("a.service", "active", digest=None)],
        None,
        [(L, "a.service"), (RE, "")],
    ),
    (
        "file present, systemd not-found: relink and start",
        [want("a.service")],
        [cur("a.service", "inactive", load="not-found")],
        {"a.service": (H1, LAUNCHED)},
        [(L, "a.service"), (RE, ""), (ST, "a.service")],
    ),
    (
        "fresh load ignores attempted (after a reboot)",
        [want("a.service")],
        [],
        {"a.service": (H1, LAUNCHED)},
        [(L, "a.service"), (RE, ""), (ST, "a.service")],
    ),
    (
        "order: unloads, loads, one reload, stops, starts",
        [
            want("n.service"),
            want("c.service", digest=H2),
            want("s.service", LOADED),
            want("t.service"),
        ],
        [
            cur("c.service"),
            cur("old.service"),
            cur("s.service"),
            cur("t.service", "inactive"),
            cur("zz.service"),
        ],
        None,
        [
            (U, "c.service"),
            (U, "old.service"),
            (U, "zz.service"),
            (L, "c.service"),
            (L, "n.service"),
            (RE, ""),
            (S, "s.service"),
            (ST, "c.service"),
            (ST, "n.service"),
            (ST, "t.service"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("desired", "current", "attempted", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan_agent(
    desired: list[DesiredUnit],
    current: list[CurrentUnit],
    attempted: dict[str, tuple[str, TargetState]] | None,
    expected: list[tuple[TaskKind, str]],
) -> None:
    tasks = plan(desired, current, attempted)
    assert kinds(tasks) == expected
    assert sum(1 for t in tasks if t.kind == RE) <= 1
    for task in tasks:
        assert task.reason
        assert (task.contents is not None) == (task.kind == L)


REASONS = [
    (
        "start",
        [want("hello.service")],
        [cur("hello.service", "inactive")],
        "unit hello.service desired launched, systemd says inactive/dead",
    ),
    (
        "stop",
        [want("hello.service", LOADED)],
        [cur("hello.service")],
        "unit hello.service desired loaded, systemd says active/running",
    ),
    (
        "unload",
        [],
        [cur("hello.service", "failed")],
        "unit hello.service not scheduled here, file present, systemd says failed/failed",
    ),
    (
        "load",
        [want("hello.service")],
        [],
        "unit hello.service scheduled here (launched), not loaded",
    ),
    (
        "changed",
        [want("hello.service", digest=H2)],
        [cur("hello.service")],
        "unit hello.service contents changed: file 1111111, scheduled 2222222",
    ),
]


@pytest.mark.parametrize(
    ("desired", "current", "reason"), [r[1:] for r in REASONS], ids=[r[0] for r in REASONS]
)
def test_reasons(desired: list[DesiredUnit], current: list[CurrentUnit], reason: str) -> None:
    assert plan(desired, current)[0].reason == reason


def test_load_carries_contents() -> None:
    d = want("a.service")
    (load,) = [t for t in plan([d], []) if t.kind == L]
    assert load.contents == d.contents


# convergence: applying a plan, then planning again, gives nothing to do ---------------------
def apply(
    tasks: list[Task],
    desired: dict[str, DesiredUnit],
    current: dict[str, CurrentUnit],
    attempted: dict[str, tuple[str, TargetState]],
) -> dict[str, CurrentUnit]:
    """A model of the executor and systemd (every task succeeds; starts stick)."""
    out = dict(current)
    for t in tasks:
        c = out.get(t.unit)
        if t.kind == U:
            out.pop(t.unit, None)
            attempted.pop(t.unit, None)
        elif t.kind == L:
            active = c.active_state if c else "inactive"
            out[t.unit] = cur(t.unit, active, desired[t.unit].hash)
        elif t.kind == S:
            out[t.unit] = cur(t.unit, "inactive", c.file_hash if c else None)
        elif t.kind == ST:
            attempted[t.unit] = (desired[t.unit].hash, desired[t.unit].target)
            out[t.unit] = cur(t.unit, "active", c.file_hash if c else None)
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


@settings(max_examples=300, deadline=None)
@given(desired_spec=DESIRED, current_spec=CURRENT)
def test_plan_converges(
    desired_spec: dict[str, tuple[TargetState, str]],
    current_spec: dict[str, tuple[str, str | None, str]],
) -> None:
    desired = {n: want(n, t, h) for n, (t, h) in desired_spec.items()}
    current = {n: cur(n, a, h, load) for n, (a, h, load) in current_spec.items()}
    attempted: dict[str, tuple[str, TargetState]] = {}
    tasks = plan_agent(desired, current, attempted)
    order = [t.kind for t in tasks]
    assert order == sorted(order, key=[U, L, RE, S, ST].index)
    after = apply(tasks, desired, current, attempted)
    assert plan_agent(desired, after, attempted) == []
    for name, d in desired.items():
        assert after[name].file_hash == d.hash
        if d.target == LOADED:
            assert after[name].active_state not in ("active", "activating", "reloading")
    for name in set(after) - set(desired):
        assert after[name].file_hash is None
