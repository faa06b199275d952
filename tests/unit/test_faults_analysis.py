"""The fault bench's analysis (bench/faults_analysis.py): samples of systemd -> figures.

Synthetic samples, as the observer would record them: each host answers every
0.3 s with each unit's ActiveState and InvocationID.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.faults_analysis import (
    GAP,
    Sample,
    Window,
    analyze,
    doubled,
    lost_desired,
)
from bench.faults_observe import parse

STEP = 0.3
UNITS = frozenset({"a.service", "b.service", "g.service"})
State = dict[str, tuple[str, str]]


def timeline(host: str, t0: float, t1: float, at: Callable[[float], State],
             skip: tuple[float, float] | None = None) -> list[Sample]:
    """Samples of ``host`` every STEP s from t0 to t1 (none inside ``skip``)."""
    out, t = [], t0
    while t <= t1 + 1e-9:
        if skip is None or not skip[0] < t < skip[1]:
            out.append(Sample(host, round(t, 3), at(t)))
        t += STEP
    return out


def run(inv: str = "1") -> tuple[str, str]:
    return ("active", inv)


OFF = ("inactive", "")


def steady(host: str, units: State) -> Callable[[float], State]:
    return lambda t: units


def window(target: dict[str, set[str]], **kw: object) -> Window:
    base: dict[str, object] = dict(start=10.0, fault_end=20.0, end=40.0,
                                   global_units=frozenset({"g.service"}), units=UNITS)
    base.update(kw)
    return Window(target={u: frozenset(h) for u, h in target.items()}, **base)  # type: ignore[arg-type]


TARGET = {"a.service": {"h1"}, "b.service": {"h2"}, "g.service": {"h1", "h2"}}


def calm() -> list[Sample]:
    return (timeline("h1", 0, 40, steady("h1", {"a.service": run("a1"), "g.service": run("g1")}))
            + timeline("h2", 0, 40, steady("h2", {"b.service": run("b1"),
                                                  "g.service": run("g2")})))


def test_nothing_happens_nothing_is_counted() -> None:
    f = analyze(calm(), window(TARGET))
    assert f.events == ()
    assert f.converged == 0.0
    assert sum(f.overlap.values()) == 0.0 and sum(f.overlap_possible.values()) == 0.0
    assert f.unknown == {"h1": 0.0, "h2": 0.0}
    assert f.cadence["h1"][1] == pytest.approx(STEP, abs=0.01)


def test_a_restart_between_two_samples_is_caught_by_its_invocation_id() -> None:
    # a.service restarted at 15 s: active before and after, only the InvocationID changed
    samples = [s for s in calm() if s.host == "h2"] + timeline(
        "h1", 0, 40, lambda t: {"a.service": run("a1" if t < 15 else "a2"),
                                "g.service": run("g1")})
    f = analyze(samples, window(TARGET))
    assert [(e.unit, e.host, e.kind, e.expected) for e in f.events] == [
        ("a.service", "h1", "restarted", False)]
    assert f.unexpected == list(f.events) and f.moved == []
    assert 15 <= f.events[0].t <= 15 + STEP


def test_a_stop_and_a_global_restart_are_unexpected() -> None:
    samples = timeline("h1", 0, 40, lambda t: {
        "a.service": run("a1") if t < 12 or t > 25 else OFF,
        "g.service": run("g1")}) + timeline("h2", 0, 40, lambda t: {
            "b.service": run("b1"), "g.service": run("g2" if t < 30 else "g3")})
    f = analyze(samples, window(TARGET))
    assert [(e.unit, e.host, e.kind) for e in f.unexpected] == [
        ("a.service", "h1", "stopped"), ("g.service", "h2", "restarted")]
    # a.service ran again on h1 from 25 s: converged then (the fault ended at 20 s)
    assert f.converged == pytest.approx(5.1, abs=STEP + 0.01)


def test_a_move_off_the_cut_host_is_expected_and_its_overlap_measured() -> None:
    # h1 cut off from 10 to 30 s; the engine moved a.service to h2 at 22 s; h1 stopped its
    # stale copy after the heal, at 31 s: both ran from 22 to 31 s
    samples = timeline("h1", 0, 40, lambda t: {
        "a.service": run("a1") if t < 31 else OFF, "g.service": run("g1")}) + timeline(
        "h2", 0, 40, lambda t: {"a.service": run("a2") if t >= 22 else OFF,
                                "b.service": run("b1"), "g.service": run("g2")})
    target = {**TARGET, "a.service": {"h2"}}
    f = analyze(samples, window(target, fault_end=30.0, may_move_from=frozenset({"h1"})))
    assert [(e.unit, e.host, e.kind) for e in f.moved] == [("a.service", "h1", "stopped")]
    assert f.unexpected == []
    assert f.overlap["a.service"] == pytest.approx(9.0, abs=2 * STEP)
    assert f.overlap["a.service"] <= f.overlap_possible["a.service"] <= 9.0 + 2 * STEP + 0.01
    assert f.overlap["b.service"] == 0.0
    assert f.converged == pytest.approx(1.0, abs=STEP + 0.01)
    # the same stop where the scenario may not move units is unexpected
    g = analyze(samples, window(target, fault_end=30.0))
    assert [(e.unit, e.kind) for e in g.unexpected] == [("a.service", "stopped")]


def test_a_silent_host_is_unknown_not_stopped() -> None:
    # h1 paused from 12 to 30 s: no answers; its units are the same afterwards
    samples = [s for s in calm() if s.host == "h2"] + timeline(
        "h1", 0, 40, steady("h1", {"a.service": run("a1"), "g.service": run("g1")}),
        skip=(12, 30))
    f = analyze(samples, window(TARGET, fault_end=29.0))
    assert f.events == ()
    assert f.unknown["h1"] == pytest.approx(18, abs=2 * STEP)
    assert f.unknown["h2"] == 0.0
    # the host was unknown at the fault's end (29 s): converged at its first answer after
    assert f.converged == pytest.approx(1.0, abs=STEP + 0.01)


def test_a_restart_hidden_in_a_silent_stretch_is_still_caught() -> None:
    samples = [s for s in calm() if s.host == "h2"] + timeline(
        "h1", 0, 40, lambda t: {"a.service": run("a1" if t < 20 else "a2"),
                                "g.service": run("g1")}, skip=(12, 30))
    f = analyze(samples, window(TARGET, fault_end=30.0))
    assert [(e.unit, e.kind, e.expected) for e in f.events] == [("a.service", "restarted", False)]


def test_not_converged_when_a_host_runs_a_unit_it_should_not_at_the_end() -> None:
    samples = calm() + timeline("h2", 0, 40, steady("h2", {}))  # noise: h2 keeps answering
    samples = [s for s in samples if s.host == "h1"] + timeline(
        "h2", 0, 40, steady("h2", {"a.service": run("x"), "b.service": run("b1"),
                                   "g.service": run("g2")}))
    f = analyze(samples, window(TARGET))
    assert f.converged is None
    assert f.overlap["a.service"] == pytest.approx(30.0, abs=STEP)


def test_not_converged_when_a_host_is_silent_at_the_end() -> None:
    samples = [s for s in calm() if s.host == "h2"] + [
        s for s in calm() if s.host == "h1" and s.t < 35]
    assert analyze(samples, window(TARGET)).converged is None
    assert GAP < 5


def test_doubled_counts_time_on_two_hosts_or_more() -> None:
    assert doubled([[(0, 10)], [(5, 20)]]) == 5
    assert doubled([[(0, 10)], [(10, 20)]]) == 0
    assert doubled([[(0, 10)], [(2, 4), (6, 8)], [(3, 7)]]) == pytest.approx(6)
    # one host's own intervals never overlap each other (a restart, widened)
    assert doubled([[(0, 10), (9, 20)], [(30, 40)]]) == 0


def test_a_restart_on_one_host_is_no_overlap() -> None:
    samples = [s for s in calm() if s.host == "h2"] + timeline(
        "h1", 0, 40, lambda t: {"a.service": run("a1" if t < 15 else "a2"),
                                "g.service": run("g1")})
    f = analyze(samples, window(TARGET))
    assert f.overlap["a.service"] == 0 and f.overlap_possible["a.service"] == 0


def test_lost_desired_names_what_changed_or_vanished() -> None:
    before = {"a.service": ("launched", "aaaa111"), "b.service": ("launched", "bbbb222")}
    assert lost_desired(before, dict(before)) == []
    after = {"a.service": ("loaded", "aaaa111")}
    assert lost_desired(before, after) == [
        "a.service: launched/aaaa111 -> loaded/aaaa111", "b.service: launched/bbbb222 -> gone"]
    assert lost_desired(before, {**before, "n.service": ("launched", "c")}, ["n.service"]) == []
    assert lost_desired(before, dict(before), ["n.service"]) == [
        "n.service: started by the bench, gone"]


def test_the_observers_output_parses_into_a_sample() -> None:
    lines = ["@ 1700000000.250000", "Id=a.service", "ActiveState=active",
             "InvocationID=0123abcd", "", "ActiveState=inactive", "InvocationID=",
             "Id=b.service"]
    s = parse("h1", lines)
    assert s is not None and s.t == 1700000000.25
    assert s.units == {"a.service": ("active", "0123abcd"), "b.service": ("inactive", "")}
    assert s.running("a.service") == "0123abcd" and s.running("b.service") is None
    assert parse("h1", ["Id=a.service"]) is None
    assert parse("h1", ["@ 12.5"]) is None


def test_a_restart_on_the_cut_host_that_stays_there_is_unexpected() -> None:
    # h1 may lose units (cut off), but a.service restarted there and is still placed there
    samples = [s for s in calm() if s.host == "h2"] + timeline(
        "h1", 0, 40, lambda t: {"a.service": run("a1" if t < 25 else "a2"),
                                "g.service": run("g1" if t < 26 else "g9")})
    f = analyze(samples, window(TARGET, fault_end=30.0, may_move_from=frozenset({"h1"})))
    assert [(e.unit, e.kind, e.expected) for e in f.events] == [
        ("a.service", "restarted", False), ("g.service", "restarted", False)]


def test_converged_only_after_the_last_divergence_after_the_fault() -> None:
    # all well at the fault's end (20 s), then a.service off on h1 from 22 to 27 s
    samples = [s for s in calm() if s.host == "h2"] + timeline(
        "h1", 0, 40, lambda t: {"a.service": OFF if 22 < t < 27 else run("a1"),
                                "g.service": run("g1")})
    f = analyze(samples, window(TARGET))
    assert f.converged == pytest.approx(7.0, abs=STEP + 0.01)


def test_a_silence_after_the_fault_delays_convergence() -> None:
    # all well at the fault's end (20 s), then h1 silent from 24 to 33 s
    samples = [s for s in calm() if s.host == "h2"] + timeline(
        "h1", 0, 40, steady("h1", {"a.service": run("a1"), "g.service": run("g1")}),
        skip=(24, 33))
    f = analyze(samples, window(TARGET))
    assert f.converged == pytest.approx(13.0, abs=STEP + 0.01)
    assert f.events == ()


def test_fleetd_errors_are_error_lines_and_tracebacks_by_their_exception() -> None:
    from bench.faults_observe import error_lines

    journal = ["INFO fleetpy.agent: started a.service", "ERROR asyncio: Task was destroyed",
               "Traceback (most recent call last):", '  File "x.py", line 1, in f',
               "    raise ValueError('bad')", "ValueError: bad", "INFO fleetpy.engine: ok"]
    assert error_lines(journal) == ["ERROR asyncio: Task was destroyed",
                                    "Traceback: ValueError: bad"]
    assert error_lines(["INFO fleetpy.agent: nothing wrong"]) == []
    assert error_lines([
        "ERROR asyncio: Task was destroyed but it is pending!",
        "task: <Task pending name='Task-96' coro=<_Stream._consume() done, defined at x.py:3>>",
        "ERROR asyncio: Task exception was never retrieved",
        "future: <Task finished name='Task-7' coro=<keep()> exception=ValueError('x')>"]) == [
        "ERROR asyncio: Task was destroyed but it is pending! (in _Stream._consume)",
        "ERROR asyncio: Task exception was never retrieved (in keep, ValueError)"]


def test_the_longest_stretch_a_unit_ran_nowhere() -> None:
    # a.service stopped on h1 at 15 s, started on h2 at 22 s: 7 s on no host
    samples = timeline("h1", 0, 40, lambda t: {
        "a.service": run("a1") if t < 15 else OFF, "g.service": run("g1")}) + timeline(
        "h2", 0, 40, lambda t: {"a.service": run("a2") if t >= 22 else OFF,
                                "b.service": run("b1"), "g.service": run("g2")})
    f = analyze(samples, window({**TARGET, "a.service": {"h2"}},
                                may_move_from=frozenset({"h1"})))
    assert f.nowhere["a.service"] == pytest.approx(7.0, abs=2 * STEP + 0.01)
    assert f.nowhere["a.service"] <= 7.0
    assert f.nowhere["b.service"] == 0.0
    assert "g.service" not in f.nowhere  # global: not one copy somewhere
    # a restart between two samples is no stretch
    assert analyze(calm(), window(TARGET)).nowhere == {"a.service": 0.0, "b.service": 0.0}
