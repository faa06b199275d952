"""The fleetlab command: output and exit status; bad input and missing pieces give one
line saying what is wrong and what to do, exit 1, and nothing half-built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetpy.lab import Lab, LabError
from fleetpy.lab import hosts as host_ops
from fleetpy.lab.cli import main
from tests.lab.traces import traces

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120), pytest.mark.usefixtures("root")]

FLEETLAB = str(Path(sys.executable).with_name("fleetlab"))
SHARED = ["--name", "fltest", "--subnet", "172.17.9.0/24"]
NONE = ["--name", "flnone", "--subnet", "172.17.14.0/24"]


def fleetlab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEETLAB, *args], capture_output=True, text=True, check=False, env=env, timeout=60
    )


def one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fleetlab: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


def test_up_while_up(lab: Lab) -> None:
    one_line_error(fleetlab(*SHARED, "up"), "fltest is already up", "fleetlab down")
    assert lab.is_up()
    assert all(h.pid for h in lab.hosts)


def test_down_while_down() -> None:
    one_line_error(fleetlab(*NONE, "down"), "flnone is not up")
    assert traces("flnone") == []


def test_commands_on_a_lab_that_is_not_up() -> None:
    for args in (
        ["status"],
        ["exec", "core-01", "--", "true"],
        ["host-stop", "core-01"],
        ["etcd-add"],
        ["env"],
    ):
        one_line_error(fleetlab(*NONE, *args), "flnone is not up", "fleetlab up")
    assert traces("flnone") == []


def test_unknown_host_and_member(lab: Lab) -> None:
    for args in (
        ["exec", "core-99", "--", "true"],
        ["shell", "core-99"],
        ["host-stop", "core-99"],
        ["host-start", "nope"],
    ):
        one_line_error(fleetlab(*SHARED, *args), "unknown host", "core-01, core-02, core-03")
    one_line_error(fleetlab(*SHARED, "etcd-remove", "infra9"), "unknown etcd member 'infra9'")
    assert all(h.pid for h in lab.hosts)


def test_exec_passes_exit_status_and_output(lab: Lab) -> None:
    done = fleetlab(*SHARED, "exec", "core-02", "--", "sh", "-c", "hostname; echo oops >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, "core-02\n", "oops\n")


def test_shell_runs_bash_in_the_host(lab: Lab) -> None:
    done = subprocess.run(
        [FLEETLAB, *SHARED, "shell", "core-03"],
        input="echo on $(hostname) as $USER; exit 4\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 4, done.stderr
    assert done.stdout == "on core-03 as root\n"


def test_env_prints_exports(lab: Lab) -> None:
    done = fleetlab(*SHARED, "env")
    assert done.returncode == 0, done.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())
    assert exports["FLEETCTL_ENDPOINT"] == (
        "http://172.17.9.101:49153,http://172.17.9.102:49153,http://172.17.9.103:49153")
    assert exports["ETCDCTL_ENDPOINTS"] == ",".join(lab.etcd_endpoints)
    assert exports["FLEETLAB_NAME"] == "fltest"
    assert exports["PATH"].startswith(f"{sys.prefix}/bin:")


def test_status_shows_hosts_and_members(lab: Lab) -> None:
    done = fleetlab(*SHARED, "status")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for h in lab.hosts:
        assert f"{h.name}  {h.machine_id}  {h.ip}" in text
    for i in (1, 2, 3):
        assert f"infra{i}  http://172.17.9.1:400{i}" in text


def test_bad_names_counts_and_subnets() -> None:
    one_line_error(fleetlab("--name", "Bad_Name", "up"), "bad lab name")
    one_line_error(fleetlab("--name", "waytoolongname", "up"), "bad lab name")
    one_line_error(fleetlab(*NONE[:2], "--subnet", "300.1.2.0/24", "up"), "bad subnet")
    one_line_error(fleetlab(*NONE[:2], "--subnet", "10.9.9.0/28", "up"), "too small")
    one_line_error(fleetlab(*NONE, "up", "--hosts", "0"), "--hosts must be 1..99")
    one_line_error(fleetlab(*NONE, "up", "--etcd-members", "100"), "--etcd-members must be")
    assert traces("flnone") == []


def test_subnet_in_use(lab: Lab) -> None:
    one_line_error(
        fleetlab("--name", "flclash", "--subnet", "172.17.9.0/24", "up"),
        "in use by 172.17.9.1 on flb-fltest",
        "--subnet",
    )
    assert traces("flclash") == []


def test_etcd_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("etcdctl", "ip", "unshare", "nsenter", "sh"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bin_dir)}
    one_line_error(fleetlab(*NONE, "up", env=env), "etcd not found in PATH", "apt-get install")
    assert traces("flnone") == []


def test_systemd_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_ops, "SYSTEMD", Path("/nonexistent/systemd"))
    result = CliRunner().invoke(main, [*NONE, "up"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "fleetlab: systemd not found at /nonexistent/systemd: apt-get install systemd"
    ]
    assert traces("flnone") == []


def test_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for args in (["up"], ["down"], ["status"], ["exec", "core-01", "--", "true"]):
        result = CliRunner().invoke(main, [*NONE, *args])
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [
            "fleetlab: must run as root (it creates namespaces, a bridge and cgroups): use sudo"
        ]
    with pytest.raises(LabError, match="must run as root"):
        Lab("flnone").up()
    assert traces("flnone") == []
