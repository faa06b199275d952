"""The seed's part 2 on the lab, command for command: hello.service end to end.

Real etcd, real fleetd on every host (fleet.service under the host's systemd),
real systemd running the unit. fleetctl runs inside the hosts, as in the
walkthrough (core-01, then core-03), over the default unix socket API.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from tests.lab.fleet_helpers import restart_fleetd, systemd_units

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

HELLO = Path(__file__).resolve().parents[2] / "unit-files" / "static" / "hello.service"
MACHINE = r"[0-9a-f]{8}\.\.\./172\.17\.9\.1\d\d"


def fleetctl(lab: Lab, host: str, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.exec(host, ["fleetctl", *args], timeout=60)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout


def eventually(check: Callable[[], object], timeout: float = 15.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")


def rows(output: str) -> list[list[str]]:
    """Table rows without the header, split on whitespace."""
    return [line.split() for line in output.strip().splitlines()[1:]]


def host_of(lab: Lab, machine_cell: str) -> str:
    ip = machine_cell.rsplit("/", 1)[1]
    return next(h.name for h in lab.hosts if h.ip == ip)


def main_pid(lab: Lab, host: str, unit: str) -> int:
    out = ok(lab.exec(host, ["systemctl", "show", "-p", "MainPID", "--value", unit]))
    return int(out.strip())


@pytest.fixture
def clean(lab: Lab) -> object:
    """Each test starts and ends with no units in the cluster."""
    yield None
    out = fleetctl(lab, "core-01", "list-unit-files", "--no-legend", "--fields=unit").stdout
    names = out.split()
    if names:
        fleetctl(lab, "core-01", "destroy", *names)


def test_fleetd_runs_on_every_host(lab: Lab) -> None:
    out = ok(fleetctl(lab, "core-01", "list-machines", "--full"))
    assert out.splitlines()[0].split() == ["MACHINE", "IP", "METADATA"]
    listed = {row[0]: row[1] for row in rows(out)}
    assert listed == {h.machine_id: h.ip for h in lab.hosts}


def test_hello_walkthrough(lab: Lab, clean: object) -> None:
    # Running hello-world: load submits, then schedules on one machine.
    out = ok(fleetctl(lab, "core-01", "load", str(HELLO)))
    assert re.fullmatch(
        rf"Unit hello\.service inactive\nUnit hello\.service loaded on ({MACHINE})\n", out
    ), out
    machine = out.split()[-1]
    target = host_of(lab, machine)

    files = rows(ok(fleetctl(lab, "core-01", "list-unit-files")))
    assert files == [["hello.service", files[0][1], "loaded", "loaded", machine]]
    assert re.fullmatch(r"[0-9a-f]{7}", files[0][1])
    assert rows(ok(fleetctl(lab, "core-01", "list-units"))) == [
        ["hello.service", machine, "inactive", "dead"]
    ]

    # Loaded means: file in /run/fleet/units, linked into /run/systemd/system, on that host only.
    for host in lab.hosts:
        link = lab.exec(host.name, ["readlink", "/run/systemd/system/hello.service"])
        if host.name == target:
            assert link.stdout.strip() == "/run/fleet/units/hello.service"
        else:
            assert link.returncode != 0, f"{host.name} has the link too"
    status = lab.exec(target, ["systemctl", "status", "hello.service"]).stdout
    assert "Loaded: loaded (/run/systemd/system/hello.service; linked-runtime" in status

    # Unload the unit-file: gone from the host, still in list-unit-files.
    out = ok(fleetctl(lab, "core-01", "unload", "hello.service"))
    assert out == "Unit hello.service inactive\n"
    assert rows(ok(fleetctl(lab, "core-01", "list-units"))) == []
    assert rows(ok(fleetctl(lab, "core-01", "list-unit-files"))) == [
        ["hello.service", files[0][1], "inactive", "inactive", "-"]
    ]
    eventually(
        lambda: lab.exec(target, ["test", "-e", "/run/fleet/units/hello.service"]).returncode,
        what="unit file removed from the host",
    )
    assert lab.exec(target, ["test", "-L", "/run/systemd/system/hello.service"]).returncode != 0

    # Let's run that service from another member of the cluster.
    out = ok(fleetctl(lab, "core-03", "start", "hello.service"))
    assert re.fullmatch(rf"Unit hello\.service launched on ({MACHINE})\n", out), out
    machine = out.split()[-1]
    target = host_of(lab, machine)
    assert rows(ok(fleetctl(lab, "core-03", "list-units"))) == [
        ["hello.service", machine, "active", "running"]
    ]
    eventually(
        lambda: "Hello World" in lab.exec(
            target, ["journalctl", "-u", "hello.service", "--no-pager"]
        ).stdout,
        what="Hello World in the host's journal",
    )

    # Stop it from any member: back to loaded, inactive/dead.
    out = ok(fleetctl(lab, "core-03", "stop", "hello.service"))
    assert out == f"Unit hello.service loaded on {machine}\n"
    eventually(
        lambda: rows(fleetctl(lab, "core-03", "list-units").stdout)
        == [["hello.service", machine, "inactive", "dead"]],
        what="inactive/dead",
    )

    # Destroy removes it from the registry and from the host.
    assert ok(fleetctl(lab, "core-01", "destroy", "hello.service")) == "Destroyed hello.service\n"
    assert rows(ok(fleetctl(lab, "core-01", "list-unit-files"))) == []
    assert lab.exec(target, ["test", "-e", "/run/fleet/units/hello.service"]).returncode != 0


@pytest.mark.parametrize("how", ["kill", "restart"])
def test_restarted_fleetd_keeps_unit_running(lab: Lab, clean: object, how: str) -> None:
    """fleetd killed (-9, systemd starts it again) or restarted gracefully: the unit
    is not stopped or restarted, neither by the old fleetd going nor by the new one's
    first reconcile pass (awaited: it reports the unit again), and the lease is adopted."""
    out = ok(fleetctl(lab, "core-01", "start", str(HELLO)))
    target = host_of(lab, out.split()[-1])
    before = systemd_units(lab, target, ["hello.service"])
    assert before["hello.service"][0] == "active" and before["hello.service"][1]
    lease = ok(lab.exec(target, ["cat", "/run/fleet/agent.lease"]))
    restart_fleetd(lab, target, how, ["hello.service"])
    # Same invocation: systemd neither stopped nor restarted it; same lease: adopted,
    # so the cluster saw no machine leave.
    assert systemd_units(lab, target, ["hello.service"]) == before
    assert ok(lab.exec(target, ["cat", "/run/fleet/agent.lease"])) == lease
    assert rows(ok(fleetctl(lab, target, "list-units")))[0][2:] == ["active", "running"]


def show(lab: Lab, host: str, unit: str, prop: str) -> str:
    return ok(lab.exec(host, ["systemctl", "show", "-p", prop, "--value", unit])).strip()


def test_new_leader_places_units_when_the_leader_dies(lab: Lab, clean: object) -> None:
    env = lab.env()
    leader = ok(lab.exec("core-01", ["etcdctl", "get", "--print-value-only",
                                     "/fleetpy/engine/leader"], env=env))
    leader_id = re.search(r'"machine_id":\s*"([0-9a-f]{32})"', leader)
    assert leader_id, leader
    leader_host = next(h.name for h in lab.hosts if h.machine_id == leader_id.group(1))
    other = next(h.name for h in lab.hosts if h.name != leader_host)
    lease = ok(lab.exec(leader_host, ["cat", "/run/fleet/agent.lease"])).strip()
    try:
        # The leader's fleetd dies for good; its lease expiring is what etcd
        # does after agent_ttl: revoke it now rather than wait 30 s.
        ok(lab.exec(leader_host, ["systemctl", "kill", "--signal=KILL", "fleet.service"]))
        ok(lab.exec(leader_host, ["systemctl", "stop", "fleet.service"]))
        ok(lab.exec("core-01", ["etcdctl", "lease", "revoke", format(int(lease), "x")], env=env))
        out = ok(fleetctl(lab, other, "start", str(HELLO)))
        assert "launched on" in out
        assert host_of(lab, out.split()[-1]) != leader_host
        new_leader = ok(lab.exec(other, ["etcdctl", "get", "--print-value-only",
                                         "/fleetpy/engine/leader"], env=env))
        assert leader_id.group(1) not in new_leader
    finally:
        ok(lab.exec(leader_host, ["systemctl", "start", "fleet.service"]))
