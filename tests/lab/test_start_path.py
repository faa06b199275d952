"""A start of a new unit, on a lab of its own: what the agent's short path relies on.

Lab ``flstart`` (172.17.68.0/24): 1 host, 1 etcd member.

- systemd 252 loads a unit it has not loaded from disk when next asked, with no
  daemon-reload, also after it looked the name up as not-found (the agent asks
  systemd about a unit before writing its file): fleetpy.agent.reload. A unit
  it has loaded keeps its old contents, and a removed file stays loaded, until
  a reload: there the agent keeps the reload.
- end to end: ``fleetctl start`` of a new unit runs it with no daemon-reload; a
  new version of the unit (destroy, start) runs the new contents;
- the settle still catches every kind of immediate failure (fleetpy.agent.settle):
  a blocking ``fleetctl start`` of each fails.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import eventually, fleetctl, ok

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

HOST = "core-01"
DRIVER = Path(__file__).with_name("start_driver.py")
UNIT = "[Unit]\nDescription={desc}\n\n[Service]\nExecStart=/bin/sleep infinity\n"
# Units that fail at once, each its own way (bench/settle_probe.py measures them)
FAILING = {
    "false.service": "[Service]\nExecStart=/bin/false\n",
    "nobinary.service": "[Service]\nExecStart=/nonexistent/binary\n",  # 203/EXEC
    "baduser.service": "[Service]\nUser=no-such-user-fleetpy\nExecStart=/bin/sleep 100\n",
    "exit1.service": "[Service]\nExecStart=/bin/sh -c 'echo failing; exit 1'\n",
}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with own_lab("flstart", "172.17.68.0/24", hosts=1, etcd_members=1) as the_lab:
        yield the_lab


def fleetd_log(lab: Lab) -> str:
    return ok(lab.exec(HOST, ["journalctl", "-u", "fleet.service", "-o", "cat", "--no-pager"]))


def systemd_reloads(lab: Lab) -> int:
    out = ok(lab.exec(HOST, ["journalctl", "_PID=1", "-o", "cat", "--no-pager"]))
    return sum(1 for line in out.splitlines() if line.strip() == "Reloading.")


def test_systemd_loads_a_new_unit_without_a_daemon_reload(lab: Lab) -> None:
    done = lab.exec(HOST, [sys.executable, str(DRIVER), "noreload", "sdnr"], timeout=90)
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    # looked up before its file existed, then linked: found, started, no reload
    assert r["looked_up_before"] == ["not-found", "inactive", "dead"]
    assert r["looked_up_after_link"] == ["loaded", "inactive", "dead"]
    assert r["looked_up_started"] == ["loaded", "active", "running"]
    assert r["never_started"] == ["loaded", "active", "running"]
    # a not-found stub another unit's Wants= keeps in memory: retried from disk too
    assert r["pinned_before"] == ["not-found", "inactive", "dead"]
    assert r["pinned_started"] == ["loaded", "active", "running"]
    assert r["reloads_meanwhile"] == 0
    # where the agent keeps the reload: a loaded unit runs what systemd read...
    assert r["changed_without_reload"] == {"Description": "v1", "NeedDaemonReload": "yes"}
    assert r["changed_after_reload"] == {"Description": "v2", "NeedDaemonReload": "no"}
    # ...and a removed file is only forgotten by a reload
    assert r["removed_without_reload"][0] == "loaded"
    assert r["removed_after_reload"][0] == "not-found"


def test_fleetctl_start_of_a_new_unit_runs_it_without_a_reload(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / "fresh.service").write_text(UNIT.format(desc="v1"))
    before = systemd_reloads(lab)
    ok(fleetctl(lab, "start", str(tmp_path / "fresh.service")))
    assert ok(lab.exec(HOST, ["systemctl", "is-active", "fresh.service"])).strip() == "active"
    assert systemd_reloads(lab) == before
    assert "daemon-reload skipped: fresh.service new to systemd" in fleetd_log(lab)
    # a new version: the destroy unloads (and reloads), the new contents run
    ok(fleetctl(lab, "destroy", "fresh.service"))
    (tmp_path / "fresh.service").write_text(UNIT.format(desc="v2"))
    ok(fleetctl(lab, "start", str(tmp_path / "fresh.service")))
    shown = ok(lab.exec(HOST, ["systemctl", "show", "-pDescription", "-pActiveState",
                               "fresh.service"]))
    assert shown.split() == ["Description=v2", "ActiveState=active"]
    ok(fleetctl(lab, "destroy", "fresh.service"))


@pytest.mark.parametrize("name", sorted(FAILING))
def test_a_blocking_start_of_a_unit_that_fails_at_once_fails(
    lab: Lab, tmp_path: Path, name: str
) -> None:
    (tmp_path / name).write_text(FAILING[name])
    done = fleetctl(lab, "start", str(tmp_path / name))
    try:
        assert done.returncode != 0, done.stdout + done.stderr
        assert f"Unit {name} failed" in done.stdout + done.stderr, done.stdout + done.stderr
    finally:
        ok(fleetctl(lab, "destroy", name))
    eventually(lambda: name not in ok(fleetctl(lab, "list-unit-files", "--no-legend")),
               what=f"{name} gone")
