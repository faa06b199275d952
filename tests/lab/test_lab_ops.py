"""Changing a running lab: hand-made units, host power, etcd membership (own lab flops)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from fleetpy.lab import Lab, LabError
from tests.lab.conftest import fresh_lab, require_root, session_lock

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def ops() -> Iterator[Lab]:
    require_root()
    with session_lock("flops"):
        lab = fresh_lab("flops", "172.17.11.0/24")
        lab.up(hosts=2, etcd_members=3)
        try:
            yield lab
        finally:
            lab.down()


def sh(lab: Lab, host: str, script: str) -> str:
    done = lab.exec(host, ["sh", "-c", script])
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_hand_made_unit_shows_linked_runtime(ops: Lab) -> None:
    # fleetd (when installed) would unload a unit it did not schedule: keep it out.
    ops.exec("core-01", ["systemctl", "stop", "fleet.service"])
    out = sh(
        ops,
        "core-01",
        "mkdir -p /run/fleet/units"
        " && printf '[Service]\\nExecStart=/bin/sleep 1000\\n' > /run/fleet/units/hello.service"
        " && ln -sf /run/fleet/units/hello.service /run/systemd/system/hello.service"
        " && systemctl daemon-reload && systemctl start hello.service"
        " && systemctl status --no-pager hello.service",
    )
    assert "Loaded: loaded (/run/systemd/system/hello.service; linked-runtime;" in out
    assert "Active: active (running)" in out
    sh(
        ops,
        "core-01",
        "systemctl stop hello.service && rm /run/systemd/system/hello.service"
        " /run/fleet/units/hello.service && systemctl daemon-reload",
    )


def test_host_stop_and_start_keep_the_machine_id(ops: Lab) -> None:
    before = {h.name: h for h in ops.hosts}
    ops.host_stop("core-02")
    stopped = {h.name: h for h in ops.hosts}
    assert stopped["core-02"].pid is None
    assert stopped["core-01"].pid == before["core-01"].pid
    with pytest.raises(LabError, match="core-02 is stopped"):
        ops.exec("core-02", ["true"])
    with pytest.raises(LabError, match="already stopped"):
        ops.host_stop("core-02")
    link = subprocess.run(["ip", "link", "show", "vflops-02"], capture_output=True, check=False)
    assert link.returncode != 0, "the stopped host's veth is gone"

    ops.host_start("core-02")
    after = {h.name: h for h in ops.hosts}
    assert after["core-02"].pid not in (None, before["core-02"].pid)
    assert after["core-02"].machine_id == before["core-02"].machine_id
    assert sh(ops, "core-02", "cat /etc/machine-id").strip() == before["core-02"].machine_id
    assert "is healthy" in ops.exec("core-02", ["etcdctl", "endpoint", "health"]).stderr
    with pytest.raises(LabError, match="already running"):
        ops.host_start("core-02")


def members(lab: Lab) -> list[str]:
    done = lab.exec("core-01", ["etcdctl", "member", "list", "-w", "simple"])
    assert done.returncode == 0, done.stderr
    return sorted(line.split(", ")[2] for line in done.stdout.splitlines())


def test_etcd_member_add_and_remove(ops: Lab) -> None:
    assert members(ops) == ["infra1", "infra2", "infra3"]
    assert ops.etcd_add() == "infra4"
    new = "http://172.17.11.1:4004"
    assert ops.etcd_endpoints[-1] == new
    assert members(ops) == ["infra1", "infra2", "infra3", "infra4"]
    put = ops.exec("core-01", ["etcdctl", "put", "k", "v"], env={"ETCDCTL_ENDPOINTS": new})
    assert put.returncode == 0, put.stderr

    ops.etcd_remove("infra2")
    assert members(ops) == ["infra1", "infra3", "infra4"]
    assert "http://172.17.11.1:4002" not in ops.etcd_endpoints
    with pytest.raises(LabError, match="unknown etcd member 'infra2'"):
        ops.etcd_remove("infra2")
    # the next free name is reused
    assert ops.etcd_add() == "infra2"
    assert members(ops) == ["infra1", "infra2", "infra3", "infra4"]
    got = ops.exec("core-02", ["etcdctl", "get", "k", "--print-value-only"])
    assert got.stdout.strip() == "v"
