"""fleetctl rolling-update on a lab of its own: a template's instances replaced one at a
time while the others keep running, and a broken version stopped and reverted.

Lab ``flroll`` (172.17.65.0/24): 3 hosts, 3 etcd members. What runs is observed
on the hosts' own systemd (``systemctl show`` inside each host), polled while
fleetctl works; hashes come from fleetctl (the registry and the agents' reports).
The broken-version test runs over both drivers (gRPC API, etcd).
Every test leaves the cluster without units.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from fleetpy.model.unitfile import make_unit_file
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import (
    active_on_hosts,
    destroy_all,
    eventually,
    fleetctl,
    ok,
    placement,
    table,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

TEMPLATE = "web@.service"
V1 = "[Unit]\nDescription=web %i v1\n\n[Service]\nExecStart=/bin/sleep infinity\n"
V2 = ("[Unit]\nDescription=web %i v2\n\n[Service]\nExecStart=/bin/sleep infinity\n"
      "ExecStartPost=/bin/sleep 2\n")
BROKEN = "[Unit]\nDescription=web %i v3\n\n[Service]\nExecStart=/bin/false\n"


def digest(text: str) -> str:
    return make_unit_file(TEMPLATE, text).hash


@pytest.fixture(scope="module")
def roll() -> Iterator[Lab]:
    with own_lab("flroll", "172.17.65.0/24", hosts=3, etcd_members=3) as lab:
        yield lab


@pytest.fixture
def lab(roll: Lab) -> Iterator[Lab]:
    yield roll
    destroy_all(roll)


def launch(lab: Lab, tmp_path: Path, count: int) -> list[str]:
    """Submit the v1 template and start ``count`` instances of it; their names."""
    (tmp_path / TEMPLATE).write_text(V1)
    ok(fleetctl(lab, "submit", str(tmp_path / TEMPLATE)))
    names = [f"web@{i}.service" for i in range(1, count + 1)]
    ok(fleetctl(lab, "start", *names))
    return names




def reported_hashes(lab: Lab) -> dict[str, str]:
    """unit -> the hash its machine reports (list-units)."""
    out = ok(fleetctl(lab, "list-units", "--no-legend", "--full", "--fields=unit,hash"))
    return {row[0]: row[1] for row in table(out) if len(row) == 2}


def file_hashes(lab: Lab) -> dict[str, str]:
    out = ok(fleetctl(lab, "list-unit-files", "--no-legend", "--full", "--fields=unit,hash"))
    return {row[0]: row[1] for row in table(out)}


def start_update(lab: Lab, path: Path, *flags: str, driver: str = "api"
                 ) -> subprocess.Popen[str]:
    """fleetctl [--driver etcd] rolling-update FLAGS PATH, running."""
    return subprocess.Popen(["fleetctl", "--driver", driver, "rolling-update", *flags, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **lab.env()})


def test_rolling_update_keeps_five_of_six_running_and_ends_on_the_new_hash(
        lab: Lab, tmp_path: Path) -> None:
    names = launch(lab, tmp_path, 6)
    eventually(lambda: all(active_on_hosts(lab, names).values()), 30, "6 instances active")
    before = placement(lab)
    new = tmp_path / "v2" / TEMPLATE
    new.parent.mkdir()
    new.write_text(V2)
    proc = start_update(lab, new, "--max-parallel", "1", "--min-healthy-time", "1s",
                        "--healthy-deadline", "30s")
    fewest, polls, mixed = 6, 0, False
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        up = sum(1 for hosts in active_on_hosts(lab, names).values() if hosts)
        fewest, polls = min(fewest, up), polls + 1
        seen = {h for n, h in file_hashes(lab).items() if n in names}
        mixed = mixed or seen == {digest(V1), digest(V2)}
    stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert proc.returncode == 0, f"exit {proc.returncode}: {stdout}{stderr}"
    assert polls >= 5, f"only {polls} polls while it ran: {stdout}"
    assert fewest >= 5, f"only {fewest} of 6 instances active at one point:\n{stdout}"
    assert mixed, "list-unit-files never showed old and new hashes side by side"
    for name in names:
        assert f"{name}: healthy" in stdout, stdout
    files = file_hashes(lab)
    assert files[TEMPLATE] == digest(V2)
    assert all(files[n] == digest(V2) for n in names), files
    eventually(lambda: all(reported_hashes(lab).get(n) == digest(V2) for n in names), 15,
               "every instance reported with the new hash")
    assert all(active_on_hosts(lab, names).values())
    after = placement(lab)
    assert {n: before[n][0] for n in names} == {n: after[n][0] for n in names}, \
        "instances changed machines"


@pytest.mark.parametrize("driver", ["api", "etcd"])
def test_broken_version_stops_at_the_first_instance_and_auto_revert_restores_it(
        lab: Lab, tmp_path: Path, driver: str) -> None:
    names = launch(lab, tmp_path, 3)
    eventually(lambda: all(active_on_hosts(lab, names).values()), 30, "3 instances active")
    bad = tmp_path / "broken" / TEMPLATE
    bad.parent.mkdir()
    bad.write_text(BROKEN)
    proc = start_update(lab, bad, "--max-parallel", "1", "--min-healthy-time", "2s",
                        "--healthy-deadline", "8s", "--auto-revert", driver=driver)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0, stdout
    assert "web@1.service: not healthy" in stderr and "failed" in stderr, stderr
    assert "stopped at web@1.service" in stderr, stderr
    assert "web@2.service: updating" not in stdout, stdout
    files = file_hashes(lab)
    assert files[TEMPLATE] == digest(V1), files
    assert all(files[n] == digest(V1) for n in names), files
    eventually(lambda: all(reported_hashes(lab).get(n) == digest(V1) for n in names)
               and all(active_on_hosts(lab, names).values()), 20,
               "every instance back on the old hash and active")
