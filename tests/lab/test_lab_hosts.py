"""The shared lab's hosts: identity, network, isolation, exec (lab fixture, 3 + 3)."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from fleetpy.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]


def sh(lab: Lab, host: str, script: str) -> str:
    done = lab.exec(host, ["sh", "-c", script])
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_hosts_have_distinct_identities(lab: Lab) -> None:
    hosts = lab.hosts
    assert [h.name for h in hosts] == ["core-01", "core-02", "core-03"]
    assert [h.ip for h in hosts] == ["172.17.9.101", "172.17.9.102", "172.17.9.103"]
    seen = {}
    for h in hosts:
        assert h.pid is not None
        out = sh(lab, h.name, "hostname; cat /etc/machine-id; ip -4 -o addr show dev eth0")
        hostname, machine_id, addr = out.splitlines()
        assert hostname == h.name
        assert machine_id == h.machine_id
        assert f" {h.ip}/24 " in addr
        seen[h.name] = (hostname, machine_id, h.ip)
    for i in range(3):
        assert len({v[i] for v in seen.values()}) == 3


def test_environment_names_the_host_ip(lab: Lab) -> None:
    for h in lab.hosts:
        env = sh(lab, h.name, "cat /etc/environment").split()
        assert f"COREOS_PUBLIC_IPV4={h.ip}" in env
        assert f"COREOS_PRIVATE_IPV4={h.ip}" in env


def test_every_host_reaches_every_etcd_member(lab: Lab) -> None:
    urls = lab.etcd_endpoints
    assert urls == [f"http://172.17.9.1:{4000 + i}" for i in (1, 2, 3)]
    for h in lab.hosts:
        # exec exports ETCDCTL_ENDPOINTS (every member), as `fleetlab env` does outside
        done = lab.exec(h.name, ["etcdctl", "endpoint", "health"])
        assert done.returncode == 0, done.stderr
        healthy = [
            line for line in (done.stdout + done.stderr).splitlines() if "is healthy" in line
        ]
        assert sorted(line.split()[0] for line in healthy) == urls


def test_systemd_and_journald_run_in_every_host(lab: Lab) -> None:
    for h in lab.hosts:
        out = sh(lab, h.name, "ps -o comm= -p 1; systemctl is-active systemd-journald")
        assert out.split() == ["systemd", "active"]
    tag = uuid.uuid4().hex
    sh(lab, "core-02", f"logger -t labtest {tag}")
    journal = lab.exec("core-02", ["journalctl", "-t", "labtest", "--no-pager"]).stdout
    assert tag in journal


def test_tmp_run_and_dev_are_private(lab: Lab) -> None:
    marker = f"labtest-{uuid.uuid4().hex}"
    dirs = ("/tmp", "/run", "/var/tmp", "/dev", "/dev/shm")
    sh(lab, "core-01", " ".join(["touch", *(f"{d}/{marker}" for d in dirs)]))
    assert not any(os.path.lexists(f"{d}/{marker}") for d in dirs)
    assert marker not in sh(lab, "core-02", "ls -a " + " ".join(dirs))
    sh(lab, "core-01", " ".join(["rm", *(f"{d}/{marker}" for d in dirs)]))


def test_exec_passes_status_output_input_and_env(lab: Lab) -> None:
    done = lab.exec(
        "core-01",
        ["sh", "-c", "cat; echo err >&2; echo $LABTEST; exit 3"],
        input="in\n",
        env={"LABTEST": "yes"},
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "in\nyes\n", "err\n")
    path, endpoint = sh(lab, "core-01", "echo $PATH; echo $FLEETCTL_ENDPOINT").split()
    assert path.split(":")[0] == f"{sys.prefix}/bin"
    assert endpoint == "unix:///var/run/fleet.sock"
    assert sh(lab, "core-01", "command -v fleetctl").strip() == f"{sys.prefix}/bin/fleetctl"


def test_env_points_at_the_lab(lab: Lab) -> None:
    env = lab.env()
    urls = ",".join(lab.etcd_endpoints)
    assert env["ETCDCTL_ENDPOINTS"] == urls
    assert env["FLEETCTL_ETCD_ENDPOINTS"] == urls
    assert env["ETCDCTL_API"] == "3"
    assert env["FLEETCTL_ENDPOINT"] == (
        "http://172.17.9.101:49153,http://172.17.9.102:49153,http://172.17.9.103:49153")
    assert env["FLEETLAB_NAME"] == "fltest"


def test_status_lists_hosts_and_members(lab: Lab) -> None:
    hosts, members = lab.status()
    assert [(h.name, h.ip, h.machine_id) for h in hosts] == [
        (h.name, h.ip, h.machine_id) for h in lab.hosts
    ]
    assert all(h.systemd in ("running", "degraded") for h in hosts)
    assert all(h.memory and h.memory > 1 << 20 for h in hosts)
    assert [m.name for m in members] == ["infra1", "infra2", "infra3"]
    assert all(m.health == "healthy" for m in members)
    assert sum(m.leader for m in members) == 1
