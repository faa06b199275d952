"""The fault bench's section (bench/faults_report.py): one row per scenario, figures summed
over repetitions, the control judged against what it must show."""

from __future__ import annotations

from bench.faults_analysis import Event, Figures
from bench.faults_report import COLUMNS, FENCED_COLUMNS, LAST_COLUMNS, Rep, UnitSet, render

UNITS = UnitSet({"a.service": "", "g.service": "Global=true"}, {"late-1.service": ""},
                frozenset({"g.service"}), frozenset())
FENCED = UnitSet({**UNITS.files, "f.service": "StopWhenDisconnected=true"}, UNITS.late,
                 UNITS.global_units, frozenset({"f.service"}))


def rep(key: str, n: int, events: tuple[Event, ...] = (), converged: float | None = 0.5,
        overlap: dict[str, float] | None = None, lost: list[str] | None = None,
        errors: list[str] | None = None, unsettled: float | None = None) -> Rep:
    figures = Figures(events, converged, overlap or {}, overlap or {}, {"h1": 0.0},
                      {"h1": (10, 0.3)}, {"a.service": 1.5, "f.service": 6.5})
    return Rep(key, n, 100.0, 110.0, 120.0, figures, lost or [], errors or [], unsettled)


def rows(text: str) -> dict[str, list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return {cells[0]: cells for line in lines[1:]
            if (cells := [c.strip() for c in line.strip().strip("|").split(" | ")])}


def test_rows_sum_the_repetitions_and_judge_the_control() -> None:
    stop = Event("a.service", "h1", 105.0, "stopped", False)
    moved = Event("a.service", "h1", 106.0, "stopped", True)
    reps = [rep("control", 0, (Event("a.service", "h1", 101.0, "restarted", False),)),
            rep("kill9", 0), rep("kill9", 1, (stop,), converged=None, lost=["a.service: x"],
                                errors=["h1: ERROR boom", "h1: ERROR boom"]),
            rep("partition-long", 0, (moved,), converged=3.0, overlap={"a.service": 7.5})]
    text = render(reps, UNITS, 10, False, ["a note"])
    header = next(line for line in text.splitlines() if line.startswith("| "))
    assert header == "| " + " | ".join((*COLUMNS, *LAST_COLUMNS)) + " |"
    table = rows(text)
    control = table["control: plain-1.service restarted with systemctl on its host"]
    assert control[1:3] == ["1", "1 (must be 1)"]
    kill = table["1. fleetd kill -9 (systemd restarts it)"]
    assert kill[1:3] == ["2", "**1**"]
    assert "not converged in 1 of 2" in kill[4]
    assert kill[-2:] == ["**1**", "2"]
    cut = table["4. a host partitioned > agent_ttl (2 x agent_ttl)"]
    assert cut[2:5] == ["0", "1", "median 3.0 s, max 3.0 s"]
    assert cut[5].startswith("7.5 s (one unit 7.5 s)")
    assert cut[6] == "1.5 s"
    assert "a.service stopped on h1 at +5.0 s (unexpected)" in text
    assert "fleetd logged `ERROR boom` x 2 (h1)" in text
    assert "- a note" in text and "**Quick run**" not in text


def test_fenced_units_get_their_own_columns() -> None:
    stop = Event("f.service", "h1", 105.0, "stopped", False)
    text = render([rep("partition-long", 0, (stop,), overlap={"f.service": 0.0})], FENCED, 10,
                  True, [])
    header = next(line for line in text.splitlines() if line.startswith("| "))
    assert all(c in header for c in FENCED_COLUMNS)
    row = rows(text)["4. a host partitioned > agent_ttl (2 x agent_ttl)"]
    assert row[2] == "0"  # a fenced unit's stop is fencing at work, not an unexpected one
    assert row[6] == "1.5 s" and row[8] == "6.5 s"
    assert row[9] == "1"  # counted here
    assert text.startswith("**Quick run**")
