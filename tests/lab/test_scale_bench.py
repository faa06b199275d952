"""``python -m bench scale --quick`` runs and writes its section (not its figures).

The bench boots its own lab ``flscalq`` (172.17.61.0/24): 3 real hosts, 20
hollow machines, 200 units. The section goes to a temporary file (``--doc``),
never to docs/benchmarks.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scale_bench import MEASURES, QUICK
from fleetpy.lab import Lab
from tests.lab.conftest import require_root, session_lock

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_scale_bench_writes_every_measure(tmp_path: Path) -> None:
    require_root()
    doc = tmp_path / "benchmarks.md"
    with session_lock(QUICK.name):
        done = subprocess.run(
            [sys.executable, "-m", "bench", "scale", "--quick", "--doc", str(doc)],
            cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    section = re.search(r"<!-- bench:scale -->\n## scale\n\nCommand: `python -m bench "
                        r"scale --quick`.*?<!-- /bench:scale -->", doc.read_text(), re.S)
    assert section is not None, doc.read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")
            for line in section[0].splitlines() if line.startswith("| ")}
    for label in MEASURES:
        assert label in rows, f"no row {label!r} in:\n{section[0]}"
        span, result, aim = rows[label][1:4]
        assert span and aim, rows[label]
        assert re.search(r"\d", result), f"{label}: no figure in {result!r}"
    assert "failed" not in section[0], section[0]
    assert not Lab(name=QUICK.name, subnet=QUICK.subnet).is_up(), "the bench left its lab up"
