"""``python -m bench faults --quick`` runs, writes its section, and its figures are sane.

The bench boots its own lab ``flchaosq`` (172.17.51.0/24) and tears it down;
the section goes to a temporary file (``--doc PATH``), never to
docs/reliability.md. Sane: the control (a unit restarted with systemctl behind
fleet's back) is counted exactly once, so the observer does see restarts; a
kill -9 of fleetd and a short partition (or a graceful restart, where the lab
cannot partition yet) stop or restart nothing, lose no desired state, and the
cluster is back in place within seconds.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.faults_bench import FENCING, QUICK_LAB
from bench.faults_report import COLUMNS, LAST_COLUMNS
from fleetpy.lab import Lab
from tests.lab.conftest import require_root, session_lock

pytestmark = [pytest.mark.lab, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]


def table(section: str) -> dict[str, dict[str, str]]:
    """scenario label -> column -> cell, from the section's markdown table."""
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    cols = [c.strip() for c in lines[0].strip("|").split(" | ")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0]] = dict(zip(cols, cells, strict=True))
    return rows


def seconds(cell: str) -> float:
    m = re.fullmatch(r"median ([\d.]+) s, max ([\d.]+) s", cell)
    assert m, f"not converged, or no figure: {cell!r}"
    return float(m[2])


def test_quick_fault_bench_writes_sane_figures(tmp_path: Path) -> None:
    require_root()
    doc = tmp_path / "reliability.md"
    with session_lock(QUICK_LAB[0]):
        done = subprocess.run(
            [sys.executable, "-m", "bench", "faults", "--quick", "--doc", str(doc)],
            cwd=ROOT, capture_output=True, text=True, timeout=380, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not Lab(name=QUICK_LAB[0], subnet=QUICK_LAB[1]).is_up(), "the bench left its lab up"
    text = doc.read_text()
    assert "## fleet's default: units keep running" in text  # the explanation came with it
    assert "## Fencing: StopWhenDisconnected" in text
    section = re.search(r"<!-- bench:faults -->\n## faults\n\nCommand: `python -m bench "
                        r"faults --quick`; measured .*? on: .*?cores.*?GiB, Linux .*?"
                        r"<!-- /bench:faults -->", text, re.S)
    assert section is not None, text
    body = section[0]
    assert "**Quick run**" in body
    rows = table(body)
    for row in rows.values():
        for col in (*COLUMNS, *LAST_COLUMNS):
            assert row.get(col), f"no {col!r} in {row}"
    other = ("4. a host partitioned < agent_ttl (agent_ttl / 2)"
             if callable(getattr(Lab, "partition", None))
             else "1. graceful `systemctl restart fleet.service`")
    control = "control: plain-1.service restarted with systemctl on its host"
    assert set(rows) == {control, "1. fleetd kill -9 (systemd restarts it)", other}, rows
    # the observer sees a restart that nothing in fleet asked for: exactly one
    assert rows[control]["unexpected stops/restarts (aim 0)"] == "1 (must be 1)"
    assert "plain-1.service restarted on core-0" in body
    for label in ("1. fleetd kill -9 (systemd restarts it)", other):
        row = rows[label]
        assert row["repetitions"] == "1"
        assert row["unexpected stops/restarts (aim 0)"] == "0", row
        assert row["moved off the faulty host"] == "0", row
        assert row["desired state lost (aim 0)"] == "0", row
        assert row["overlap: most in one repetition, all units"].startswith("0.0 s"), row
        assert row["longest a unit ran on no host"] == "0.0 s", row
        if FENCING:  # StopWhenDisconnected units: never two copies (they may stop)
            assert row["overlap, fenced units"].startswith("0.0 s"), row
        # nothing moved: in place again at once (a few samples of slack on a busy machine)
        assert seconds(row["converged after the fault's end"]) < 5.0, row
    answers = re.search(r"Observer: (\d+) answers from the hosts in all; median ([\d.]+) s",
                        body)
    assert answers is not None, body
    assert int(answers[1]) >= 30 and float(answers[2]) < 1.0, answers[0]
