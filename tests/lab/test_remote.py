"""fleetctl ssh, status, journal and --tunnel on the lab, with real OpenSSH.

fleetctl runs on this machine (outside the hosts, like a laptop) with the
variables `fleetlab env` gives, and each test's own known_hosts file; or
inside a host, as in the seed. Every host runs its own sshd with its own
host key and a `core` user.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import HostInfo, Lab
from tests.lab.test_walkthrough import eventually, ok, rows

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "unit-files" / "static" / "hello.service"
BIN = Path(sys.prefix) / "bin"


def run_ctl(lab: Lab, home: Path, *args: str, tunnel: bool = False, timeout: float = 60,
            extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """fleetctl here, as a user of the lab would run it after `eval $(fleetlab env)`."""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           **lab.env(), "FLEETCTL_KNOWN_HOSTS_FILE": str(home / "known_hosts")}
    if tunnel:  # from outside: only ssh to a member, the API socket forwarded
        env.pop("FLEETCTL_ENDPOINT")
        env.pop("FLEETCTL_ETCD_ENDPOINTS")
        env["FLEETCTL_TUNNEL"] = lab.hosts[0].ip
    env.update(extra or {})
    return subprocess.run([str(BIN / "fleetctl"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="module")
def hello(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostInfo]:
    """hello.service running somewhere in the cluster: the host it runs on."""
    home = tmp_path_factory.mktemp("hello")
    out = ok(run_ctl(lab, home, "start", str(HELLO)))
    ip = out.split("/")[-1].strip()
    host = next(h for h in lab.hosts if h.ip == ip)
    eventually(lambda: "Hello World" in lab.exec(
        host.name, ["journalctl", "-u", "hello.service", "--no-pager"]).stdout,
        what="hello.service logging")
    yield host
    run_ctl(lab, home, "destroy", "hello.service")


def test_ssh_to_a_machine_and_to_a_units_host(lab: Lab, home: Path, hello: HostInfo) -> None:
    target = lab.hosts[1]
    done = run_ctl(lab, home, "ssh", target.machine_id[:8], "hostname; id -un")
    assert ok(done).split() == [target.name, "core"]
    assert "Permanently added" in done.stderr  # a new host key, recorded
    assert ok(run_ctl(lab, home, "ssh", "hello.service", "hostname")).strip() == hello.name
    # The remote exit status is fleetctl's.
    assert run_ctl(lab, home, "ssh", target.machine_id[:8], "--", "exit 7").returncode == 7
    # Unknown, refused, and said so.
    done = run_ctl(lab, home, "ssh", "nope.service")
    assert (done.returncode, done.stderr) == (
        1, "Unable to proceed: could not find matching unit or machine\n")
    done = run_ctl(lab, home, "ssh", "--unit", "nope.service")
    assert (done.returncode, done.stderr) == (1, "Unit nope.service does not exist.\n")
    # As in the seed: from a member, to another machine by its ID prefix.
    other = lab.hosts[2]
    inside = lab.exec(lab.hosts[0].name, ["fleetctl", "ssh", other.machine_id[:8], "hostname"])
    assert ok(inside).strip() == other.name


def test_ssh_forwards_the_agent_only_with_A(lab: Lab, home: Path) -> None:
    sock = home / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        eventually(sock.exists, what="ssh-agent socket")
        key = lab.env()["FLEETCTL_SSH_IDENTITY_FILE"]
        add = subprocess.run(["ssh-add", key], env={"SSH_AUTH_SOCK": str(sock)},
                             capture_output=True, text=True, check=False)
        assert add.returncode == 0, add.stderr
        # The key comes from the agent now, not from a file.
        extra = {"SSH_AUTH_SOCK": str(sock), "FLEETCTL_SSH_IDENTITY_FILE": ""}
        machine = lab.hosts[0].machine_id[:8]
        done = run_ctl(lab, home, "ssh", "-A", machine, "ssh-add", "-l", extra=extra)
        assert ok(done).count("fleetlab-fltest") == 1
        done = run_ctl(lab, home, "ssh", machine, "ssh-add", "-l", extra=extra)
        assert done.returncode == 2  # no agent there
    finally:
        agent.terminate()
        agent.wait()


def test_status_and_journal_of_a_running_unit(lab: Lab, home: Path, hello: HostInfo) -> None:
    status = run_ctl(lab, home, "status", "hello.service")
    out = ok(status)
    assert out.startswith("● hello.service - My Service\n")
    assert "Active: active (running)" in out and f"{hello.name} sh[" in out
    lines = ok(run_ctl(lab, home, "journal", "--lines", "3", "hello.service")).splitlines()
    assert len(lines) == 3 and all(hello.name in line for line in lines)
    cat = ok(run_ctl(lab, home, "journal", "--sudo", "--output", "cat", "-n", "2",
                     "hello.service"))
    assert cat.splitlines() == ["Hello World", "Hello World"]
    # Known but not loaded, unknown: said so, nothing run.
    unit = home / "idle.service"
    unit.write_text("[Service]\nExecStart=/bin/sleep infinity\n")
    ok(run_ctl(lab, home, "submit", str(unit)))
    try:
        done = run_ctl(lab, home, "status", "idle.service")
        assert (done.returncode, done.stderr) == (
            1, "Unit idle.service does not appear to be loaded.\n")
        done = run_ctl(lab, home, "journal", "idle.service")
        assert (done.returncode, done.stderr) == (
            1, "Unit idle.service does not appear to be running.\n")
    finally:
        ok(run_ctl(lab, home, "destroy", "idle.service"))
    done = run_ctl(lab, home, "status", "nope.service")
    assert (done.returncode, done.stderr) == (1, "Unit nope.service does not exist.\n")


def test_status_of_a_global_unit_on_every_host(lab: Lab, home: Path) -> None:
    unit = home / "everywhere.service"
    unit.write_text("[Service]\nExecStart=/bin/sleep infinity\n[X-Fleet]\nGlobal=true\n")
    ok(run_ctl(lab, home, "start", str(unit)))
    try:
        out = ok(run_ctl(lab, home, "status", "everywhere.service"))
        heads = re.findall(r"^=== everywhere\.service on [0-9a-f]{8}\.\.\./(\S+) ===$", out,
                           re.MULTILINE)
        assert sorted(heads) == sorted(h.ip for h in lab.hosts)
        assert out.count("Active: active (running)") == len(lab.hosts)
    finally:
        ok(run_ctl(lab, home, "destroy", "everywhere.service"))


def test_journal_follow_prints_new_lines(lab: Lab, home: Path, hello: HostInfo) -> None:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), **lab.env(),
           "FLEETCTL_KNOWN_HOSTS_FILE": str(home / "known_hosts")}
    follow = subprocess.Popen([str(BIN / "fleetctl"), "journal", "-f", "-n", "0", "--output",
                               "short-unix", "hello.service"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        started = time.time()
        assert follow.stdout is not None
        stamps = [float(follow.stdout.readline().split()[0]) for _ in range(3)]
        # New entries, as they are written (hello.service logs every second).
        assert all(s > started - 1 for s in stamps) and stamps == sorted(stamps)
        assert time.time() - started < 10
    finally:
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) is not None


def test_known_hosts_added_then_a_changed_key_refused(lab: Lab, home: Path) -> None:
    host = lab.hosts[2]
    known = home / "known_hosts"
    machine = host.machine_id[:8]
    done = run_ctl(lab, home, "ssh", machine, "true")
    assert done.returncode == 0 and "Permanently added" in done.stderr
    assert known.read_text().startswith(f"{host.ip} ssh-ed25519 ")
    done = run_ctl(lab, home, "ssh", machine, "true")
    assert (done.returncode, done.stderr) == (0, "")

    keys = lab.cfg.host_dir(host.name) / "ssh"
    saved = home / "saved-keys"
    shutil.copytree(keys, saved)
    try:
        for f in keys.glob("ssh_host_ed25519_key*"):
            f.unlink()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(keys / "ssh_host_ed25519_key")], check=True)
        ok(lab.exec(host.name, ["systemctl", "restart", "ssh.service"]))
        done = run_ctl(lab, home, "ssh", machine, "echo", "in")
        assert done.returncode == 255 and done.stdout == ""
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED!" in done.stderr
        assert "Host key verification failed." in done.stderr
        assert known.read_text().count(host.ip) == 1  # not replaced
        loose = run_ctl(lab, home, "--strict-host-key-checking=false", "ssh", machine, "echo in")
        assert ok(loose) == "in\n"
    finally:
        for f in keys.glob("ssh_host_ed25519_key*"):
            f.unlink()
        for f in saved.glob("ssh_host_ed25519_key*"):
            shutil.copy2(f, keys / f.name)
        ok(lab.exec(host.name, ["systemctl", "restart", "ssh.service"]))


def test_every_command_through_tunnel(lab: Lab, home: Path) -> None:
    unit = home / "tunnelled.service"
    unit.write_text("[Unit]\nDescription=through the tunnel\n"
                    "[Service]\nExecStart=/bin/sh -c 'echo tunnelled; exec sleep infinity'\n")

    def ctl(*args: str) -> str:
        return ok(run_ctl(lab, home, *args, tunnel=True))

    assert len(rows(ctl("list-machines"))) == len(lab.hosts)
    assert ctl("submit", str(unit)) == "Unit tunnelled.service inactive\n"
    assert "Description=through the tunnel" in ctl("cat", "tunnelled.service")
    assert ctl("load", "tunnelled.service").startswith("Unit tunnelled.service loaded on ")
    out = ctl("start", "tunnelled.service")
    assert out.startswith("Unit tunnelled.service launched on ")
    host = next(h for h in lab.hosts if h.ip == out.split("/")[-1].strip())
    mine = [r for r in rows(ctl("list-units")) if r[0] == "tunnelled.service"]
    assert mine == [["tunnelled.service", out.split()[-1], "active", "running"]]
    assert "tunnelled.service" in [r[0] for r in rows(ctl("list-unit-files"))]
    assert "Active: active (running)" in ctl("status", "tunnelled.service")
    eventually(lambda: "tunnelled" in ctl("journal", "tunnelled.service"), what="journal")
    assert ctl("ssh", "tunnelled.service", "hostname").strip() == host.name
    assert ctl("restart", "tunnelled.service").endswith("launched on " + out.split()[-1] + "\n")
    assert ctl("stop", "tunnelled.service").startswith("Unit tunnelled.service loaded on ")
    assert ctl("unload", "tunnelled.service") == "Unit tunnelled.service inactive\n"
    assert ctl("destroy", "tunnelled.service") == "Destroyed tunnelled.service\n"
    assert "tunnelled.service" not in [r[0] for r in rows(ctl("list-unit-files"))]
    # A member that cannot be reached: ssh's reason, no traceback.
    done = run_ctl(lab, home, "list-units", tunnel=True,
                   extra={"FLEETCTL_TUNNEL": lab.cfg.gateway, "FLEETCTL_SSH_TIMEOUT": "2"})
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: Unable to initialize client: cannot open the ssh "
                                  f"tunnel to {lab.cfg.gateway}:22:\n")


def test_api_socket_is_for_root_and_group_fleet(lab: Lab, home: Path) -> None:
    host = lab.hosts[0].name
    assert ok(lab.exec(host, ["stat", "-c", "%A %U %G", "/var/run/fleet.sock"])) == (
        "srw-rw---- root fleet\n")
    refused = lab.exec(host, ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "fleetctl", "list-units"])
    assert (refused.returncode, refused.stderr) == (1, (
        "Error: permission denied on the fleet API at unix:///var/run/fleet.sock "
        "(run as root or as a member of the socket's group)\n"))
    # core is in group fleet: fleetctl works in an ssh session, as on CoreOS.
    done = run_ctl(lab, home, "ssh", lab.hosts[0].machine_id[:8], "fleetctl", "list-machines")
    assert len(rows(ok(done))) == len(lab.hosts)


def test_no_ssh_left_running(lab: Lab) -> None:
    """Tunnels and sessions end with their fleetctl (nothing of ours lingers here)."""
    mine = subprocess.run(["pgrep", "-f", f"ssh .*-l core .*{lab.cfg.subnet.rsplit('.', 1)[0]}"],
                          capture_output=True, text=True, check=False).stdout.split()
    assert [p for p in mine if int(p) != os.getpid()] == []
