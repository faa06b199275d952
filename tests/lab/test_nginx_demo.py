"""The seed's "More complex units", "DJ, spin that" and "DJ, more flexibility please".

Real nginx (the Debian package) in three lab hosts, each with its discovery
unit registering it in etcd; fleetctl from this machine (``fleetlab env``) and
from inside a host, as in the seed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from fleetpy.lab import Lab
from tests.lab.fleet_helpers import (
    ROOT,
    UNIT_FILES,
    destroy_all,
    etcdctl,
    eventually,
    fleetctl,
    ok,
    placement,
    running,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

PORTS = (5555, 6666, 7777)
LEASE = 30  # the discovery unit's etcd lease
AT_ONCE = 2.0  # s from the stop call: what "at once" allows on a noisy machine


def lease_left(lab: Lab, key: str) -> int:
    """Seconds left on the etcd lease ``key`` is attached to."""
    found = json.loads(etcdctl(lab, "get", "-w", "json", key))["kvs"][0]
    out = etcdctl(lab, "lease", "timetolive", format(int(found["lease"]), "x"))
    match = re.search(r"remaining\((-?\d+)s\)", out)
    assert match, out
    return int(match.group(1))


def services(lab: Lab) -> dict[str, dict[str, object]]:
    """/services/nginx/<ip> -> its JSON value."""
    lines = etcdctl(lab, "get", "--prefix", "/services/nginx/").splitlines()
    return {k: json.loads(v) for k, v in zip(lines[::2], lines[1::2], strict=True)}


def registered(lab: Lab, count: int) -> dict[str, dict[str, object]] | None:
    found = services(lab)
    return found if len(found) == count else None


def page(ip: str, port: object) -> str:
    with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=5) as resp:
        return str(resp.read().decode())


@pytest.fixture
def demo(lab: Lab) -> Iterator[Lab]:
    yield lab
    destroy_all(lab)
    etcdctl(lab, "del", "--prefix", "/services/nginx/")


def test_dj_spin_that(demo: Lab) -> None:
    lab = demo
    instances = sorted(str(p) for p in (UNIT_FILES / "instances").iterdir())
    done = fleetctl(lab, "start", *instances)
    out = ok(done)
    names = [os.path.basename(p) for p in instances]
    assert out.splitlines()[:6] == [f"Unit {n} inactive" for n in names]
    assert sorted(line.split()[1] for line in out.splitlines()[6:]) == sorted(names)
    assert all(" launched on " in line for line in out.splitlines()[6:])
    assert "waiting" not in done.stderr  # followers were started after their nginx

    where = eventually(lambda: running(lab, names), what="six units active")
    assert len({where[f"nginx@{p}.service"] for p in PORTS}) == 3  # three different hosts
    for p in PORTS:
        assert where[f"nginx-discovery@{p}.service"] == where[f"nginx@{p}.service"]

    ip_of = {h.name: h.ip for h in lab.hosts}
    found = eventually(lambda: registered(lab, 3), what="three keys under /services/nginx/")
    for p in PORTS:
        host = where[f"nginx@{p}.service"]
        assert found[f"/services/nginx/{ip_of[host]}"] == {
            "host": host, "ipv4_addr": ip_of[host], "port": p}
        assert page(ip_of[host], p) == f"nginx@{p} on {host} ({ip_of[host]}:{p})\n"

    # Stop one: its discovery unit follows (BindsTo) and its ExecStop removes the key
    # at once (0.2-0.4 s measured). The key's lease has longer left than AT_ONCE (it is
    # granted anew every 20 s for 30 s), and the discovery loop checks nginx every 20 s:
    # neither could remove it in time.
    host = where["nginx@5555.service"]
    key = f"/services/nginx/{ip_of[host]}"
    assert lease_left(lab, key) > AT_ONCE + 3
    started = time.monotonic()
    out = ok(fleetctl(lab, "stop", "nginx@5555.service"))
    assert out == f"Unit nginx@5555.service loaded on {lab_legend(lab, host)}\n"
    eventually(lambda: key not in services(lab), timeout=LEASE, every=0.1,
               what="the stopped instance's key removed")
    elapsed = time.monotonic() - started
    assert elapsed < AT_ONCE, f"key removed {elapsed:.1f}s after the stop: not by ExecStop"
    assert placement(lab)["nginx-discovery@5555.service"] == (host, "inactive")
    with pytest.raises(OSError):
        page(ip_of[host], 5555)
    # And start it again: registered again.
    ok(fleetctl(lab, "start", "nginx@5555.service"))
    eventually(lambda: f"/services/nginx/{ip_of[host]}" in services(lab), timeout=10,
               what="the restarted instance registered again")

    # A fourth instance: no host is free of nginx, and fleetctl says so.
    ok(fleetctl(lab, "submit", *sorted(str(p) for p in (UNIT_FILES / "templates").iterdir())))
    done = fleetctl(lab, "start", "--block-attempts=4", "nginx@8888.service",
                    "nginx-discovery@8888.service")
    assert done.returncode == 1
    assert ("Unit nginx@8888.service is waiting to be scheduled: Conflicts: nginx@*.service "
            "runs on every eligible machine (") in done.stderr
    assert ("Unit nginx-discovery@8888.service is waiting to be scheduled: "
            "MachineOf=nginx@8888.service: waiting for nginx@8888.service to be scheduled"
            ) in done.stderr


def lab_legend(lab: Lab, host: str) -> str:
    h = next(h for h in lab.hosts if h.name == host)
    return f"{h.machine_id[:8]}.../{h.ip}"


def test_dj_more_flexibility_from_inside_a_host(demo: Lab) -> None:
    lab = demo

    def in_core01(command: str) -> subprocess.CompletedProcess[str]:
        return lab.exec("core-01", ["sh", "-c", f"cd {ROOT} && {command}"], timeout=60)

    out = ok(in_core01("fleetctl submit unit-files/templates/*"))
    assert out == "Unit nginx-discovery@.service inactive\nUnit nginx@.service inactive\n"
    out = ok(in_core01("fleetctl start nginx@4444.service nginx-discovery@4444.service"))
    lines = out.splitlines()
    assert lines[:2] == ["Unit nginx@4444.service inactive",
                         "Unit nginx-discovery@4444.service inactive"]
    machines = {line.split()[-1] for line in lines[2:]}
    assert len(lines) == 4 and len(machines) == 1, out
    ip = machines.pop().rsplit("/", 1)[1]
    host = next(h.name for h in lab.hosts if h.ip == ip)
    found = eventually(lambda: services(lab).get(f"/services/nginx/{ip}"),
                       what="nginx@4444 registered")
    assert found == {"host": host, "ipv4_addr": ip, "port": 4444}
    assert page(ip, 4444) == f"nginx@4444 on {host} ({ip}:4444)\n"
    # Templates themselves cannot be started.
    bad = in_core01("fleetctl start unit-files/templates/nginx@.service")
    assert bad.returncode == 1
    assert "Unable to start nginx@.service: it is a template unit" in bad.stderr
    out = ok(in_core01("fleetctl destroy nginx@4444.service nginx-discovery@4444.service"))
    assert out == "Destroyed nginx@4444.service\nDestroyed nginx-discovery@4444.service\n"
    eventually(lambda: f"/services/nginx/{ip}" not in services(lab), timeout=10,
               what="key removed when the discovery unit stopped")
