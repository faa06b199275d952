"""Agent plan: desired schedule + fleet's record + systemd's view -> ordered tasks with reasons."""

from __future__ import annotations

import pytest

from fleetpy.agent.plan import (
    CurrentUnit,
    DesiredUnit,
    Record,
    Task,
    TaskKind,
    plan_agent,
)
from fleetpy.model.types import TargetState

LOADED, LAUNCHED = TargetState.LOADED, TargetState.LAUNCHED
H1, H2 = "1" * 40, "2" * 40
U, L, RE, S, ST = TaskKind.UNLOAD, TaskKind.LOAD, TaskKind.RELOAD, TaskKind.STOP, TaskKind.START
R = TaskKind.RECORD
Records = dict[str, Record]


def want(name: str, target: TargetState = LAUNCHED, digest: str = H1) -> DesiredUnit:
    return DesiredUnit(name=name, hash=digest, target=target, contents=f"[Service]\n# {digest}\n")


def cur(
    name: str, active: str = "active", digest: str | None = H1, load: str = "loaded",
    sub: str | None = None,
) -> CurrentUnit:
    if sub is None:
        sub = {"active": "running", "inactive": "dead", "failed": "failed"}.get(active, active)
    return CurrentUnit(
        name=name, file_hash=digest, load_state=load, active_state=active, sub_state=sub
    )


def by_fleet(*names: str, state: TargetState = LAUNCHED, digest: str = H1) -> Records:
    """fleet's record: each name loaded or launched by fleet."""
    return {n: Record(digest, state) for n in names}


def loaded_by_fleet(*names: str) -> Records:
    return by_fleet(*names, state=LOADED)


def plan(
    desired: list[DesiredUnit],
    current: list[CurrentUnit],
    record: Records | None = None,
    holding: frozenset[str] = frozenset(),
) -> list[Task]:
    return plan_agent(
        {d.name: d for d in desired}, {c.name: c for c in current}, record or {}, holding
    )


def kinds(tasks: list[Task]) -> list[tuple[TaskKind, str]]:
    return [(t.kind, t.unit) for t in tasks]


CASES = [
    ("nothing", [], [], None, []),
    ("converged launched", [want("a.service")], [cur("a.service")], by_fleet("a.service"), []),
    (
        "converged loaded",
        [want("a.service", LOADED)],
        [cur("a.service", "inactive")],
        loaded_by_fleet("a.service"),
        [],
    ),
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
        loaded_by_fleet("a.service"),
        [(ST, "a.service")],
    ),
    (
        "launched -> loaded: fleet launched it, fleet stops it",
        [want("a.service", LOADED)],
        [cur("a.service")],
        by_fleet("a.service"),
        [(S, "a.service")],
    ),
    (
        "stop an activating unit fleet launched",
        [want("a.service", LOADED)],
        [cur("a.service", "activating")],
        by_fleet("a.service"),
        [(S, "a.service")],
    ),
    (
        "stop cancels a pending auto-restart of a unit fleet launched",
        [want("a.service", LOADED)],
        [cur("a.service", "activating", sub="auto-restart")],
        by_fleet("a.service"),
        [(S, "a.service")],
    ),
    (
        "loaded, started by systemd (Requires=, socket, path): not stopped",
        [want("db.service", LOADED), want("echo.service", LOADED), want("p.service", LOADED)],
        [cur("db.service"), cur("echo.service"), cur("p.service", "activating")],
        loaded_by_fleet("db.service", "echo.service", "p.service"),
        [],
    ),
    (
        "socket launched, its service loaded and active after a connection",
        [want("echo.socket"), want("echo.service", LOADED)],
        [cur("echo.socket", sub="listening"), cur("echo.service")],
        {**by_fleet("echo.socket"), **loaded_by_fleet("echo.service")},
        [],
    ),
    (
        "loaded unit systemd started is stopped by an unload (fleet's file goes)",
        [],
        [cur("db.service")],
        loaded_by_fleet("db.service"),
        [(U, "db.service"), (RE, "")],
    ),
    (
        "loaded unit systemd started: a new version unloads (stops) and loads it",
        [want("db.service", LOADED, H2)],
        [cur("db.service")],
        loaded_by_fleet("db.service"),
        [(U, "db.service"), (L, "db.service"), (RE, "")],
    ),
    (
        "loaded by fleet, started by systemd, then started by fleet: recorded, not restarted",
        [want("db.service")],
        [cur("db.service")],
        loaded_by_fleet("db.service"),
        [(R, "db.service")],
    ),
    ("not scheduled here", [], [cur("a.service")], by_fleet("a.service"), [(U, "a.service"),
                                                                           (RE, "")]),
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
        by_fleet("a.service"),
        [(U, "a.service"), (RE, "")],
    ),
    (
        "hash changed launched",
        [want("a.service", digest=H2)],
        [cur("a.service")],
        by_fleet("a.service"),
        [(U, "a.service"), (L, "a.service"), (RE, ""), (ST, "a.service")],
    ),
    (
        "hash changed loaded",
        [want("a.service", LOADED, H2)],
        [cur("a.service")],
        by_fleet("a.service"),
        [(U, "a.service"), (L, "a.service"), (RE, "")],
    ),
    (
        "hash changed starts although the new hash is recorded launched",
        [want("a.service", digest=H2)],
        [cur("a.service", "failed")],
        by_fleet("a.service", digest=H2),
        [(U, "a.service"), (L, "a.service"), (RE, ""), (ST, "a.service")],
    ),
    (
        "fleetd restarted with its record: healthy units untouched",
        [want("a.service"), want("b.service"), want("c.service", LOADED),
         want("d.service", LOADED)],
        [cur("a.service"), cur("b.service", "reloading"), cur("c.service", "inactive"),
         cur("d.service")],
        {**by_fleet("a.service", "b.service"), **loaded_by_fleet("c.service", "d.service")},
        [],
    ),
    (
        "fleetd restarted without a record: units adopted as they are, none stopped or started",
        [want("a.service"), want("c.service", LOADED), want("d.service", LOADED)],
        [cur("a.service"), cur("c.service", "inactive"), cur("d.service")],
        None,
        [(R, "a.service"), (R, "c.service"), (R, "d.service")],
    ),
    (
        "activating is not started again",
        [want("a.service")],
        [cur("a.service", "activating")],
        by_fleet("a.service"),
        [],
    ),
    (
        "deactivating is left alone",
        [want("a.service")],
        [cur("a.service", "deactivating")],
        loaded_by_fleet("a.service"),
        [],
    ),
    (
        "failed, not launched by fleet: start",
        [want("a.service")],
        [cur("a.service", "failed")],
        loaded_by_fleet("a.service"),
        [(ST, "a.service")],
    ),
    (
        "failed after fleet's start: no crash loop",
        [want("a.service")],
        [cur("a.service", "failed")],
        by_fleet("a.service"),
        [],
    ),
    (
        "finished (inactive) after fleet's start: not started again",
        [want("a.service")],
        [cur("a.service", "inactive")],
        by_fleet("a.service"),
        [],
    ),
    (
        "oneshot active/exited after fleet's start: nothing",
        [want("a.service")],
        [cur("a.service", "active", sub="exited")],
        by_fleet("a.service"),
        [],
    ),
    (
        "launched record of an older hash: start",
        [want("a.service")],
        [cur("a.service", "failed")],
        by_fleet("a.service", digest=H2),
        [(ST, "a.service")],
    ),
    (
        "file missing, unit running, launched by fleet: load only",
        [want("a.service")],
        [cur("a.service", "active", digest=None)],
        by_fleet("a.service"),
        [(L, "a.service"), (RE, "")],
    ),
    (
        "file present, systemd not-found: relink and start",
        [want("a.service")],
        [cur("a.service", "inactive", load="not-found")],
        by_fleet("a.service"),
        [(L, "a.service"), (RE, ""), (ST, "a.service")],
    ),
    (
        "fresh load ignores the record (after a reboot)",
        [want("a.service")],
        [],
        by_fleet("a.service"),
        [(L, "a.service"), (RE, ""), (ST, "a.service")],
    ),
    (
        "order: unloads, loads, one reload, stops, starts, records",
        [
            want("n.service"),
            want("c.service", digest=H2),
            want("s.service", LOADED),
            want("t.service"),
            want("u.service"),
        ],
        [
            cur("c.service"),
            cur("old.service"),
            cur("s.service"),
            cur("t.service", "inactive"),
            cur("u.service"),
            cur("zz.service"),
        ],
        {**by_fleet("c.service", "s.service"), **loaded_by_fleet("t.service", "u.service")},
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
            (R, "u.service"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("desired", "current", "record", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan_agent(
    desired: list[DesiredUnit],
    current: list[CurrentUnit],
    record: Records | None,
    expected: list[tuple[TaskKind, str]],
) -> None:
    tasks = plan(desired, current, record)
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
        loaded_by_fleet("hello.service"),
        "unit hello.service desired launched, systemd says inactive/dead",
    ),
    (
        "stop",
        [want("hello.service", LOADED)],
        [cur("hello.service")],
        by_fleet("hello.service"),
        "unit hello.service desired loaded, launched by fleet, systemd says active/running",
    ),
    (
        "adopt loaded",
        [want("hello.service", LOADED)],
        [cur("hello.service")],
        None,
        "unit hello.service loaded without fleet's record, systemd says active/running: "
        "recorded loaded",
    ),
    (
        "adopt launched",
        [want("hello.service")],
        [cur("hello.service")],
        loaded_by_fleet("hello.service"),
        "unit hello.service desired launched, already up (systemd says active/running): "
        "recorded launched",
    ),
    (
        "unload",
        [],
        [cur("hello.service", "failed")],
        by_fleet("hello.service"),
        "unit hello.service not scheduled here, file present, systemd says failed/failed",
    ),
    (
        "load",
        [want("hello.service")],
        [],
        None,
        "unit hello.service scheduled here (launched), not loaded",
    ),
    (
        "changed",
        [want("hello.service", digest=H2)],
        [cur("hello.service")],
        by_fleet("hello.service"),
        "unit hello.service contents changed: file 1111111, scheduled 2222222",
    ),
]


@pytest.mark.parametrize(
    ("desired", "current", "record", "reason"),
    [r[1:] for r in REASONS],
    ids=[r[0] for r in REASONS],
)
def test_reasons(
    desired: list[DesiredUnit], current: list[CurrentUnit], record: Records | None, reason: str
) -> None:
    assert plan(desired, current, record)[0].reason == reason


def test_load_carries_contents() -> None:
    d = want("a.service")
    (load,) = [t for t in plan([d], []) if t.kind == L]
    assert load.contents == d.contents


def test_tasks_carry_the_record_to_keep() -> None:
    tasks = plan([want("a.service"), want("b.service", LOADED)], [cur("b.service")],
                 by_fleet("b.service"))
    records = {(t.kind, t.unit): t.record for t in tasks}
    assert records[(L, "a.service")] == Record(H1, LOADED)
    assert records[(ST, "a.service")] == Record(H1, LAUNCHED)
    assert records[(S, "b.service")] == Record(H1, LOADED)


def test_units_in_back_off_get_no_task_and_no_reload() -> None:
    """A unit whose stop systemd refused waits out its back-off: no task, no daemon-reload."""
    current = [cur("r.service"), cur("x.service", "inactive")]
    record = by_fleet("r.service", "x.service")
    assert kinds(plan([], current, record, frozenset({"r.service"}))) == [
        (U, "x.service"), (RE, "")]
    assert plan([], current[:1], record, frozenset({"r.service"})) == []
    assert plan([want("r.service", LOADED)], current[:1], record, frozenset({"r.service"})) == []
    assert kinds(plan([want("r.service", LOADED)], current[:1], record)) == [(S, "r.service")]
