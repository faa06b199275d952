"""Faults the lab injects (fleetpy/lab/faults.py), on a lab of its own.

Lab ``flinject`` (172.17.46.0/24): 3 hosts, 3 etcd members, agent_ttl 5 s.
fleetctl from this machine talks to core-01's API, so the faults hit core-02
and core-03. Units are pinned (MachineID) to the host under test: they cannot
move, and the host keeps the same copy (same InvocationID) through the fault,
until fleetd is back on etcd.

After heal/resume the unit is still the same invocation: once the machine's
lease has expired the engine unschedules even a pinned unit, and the agent,
which sees that before it registers again (after a pause, its etcd watch
survives the freeze and delivers the unschedule first), keeps the unit running
until the engine has placed it here again (fleetpy/agent/hold.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab, LabError, cgroups
from fleetpy.lab.procs import Proc
from fleetpy.lab.state import FLEET_API_PORT
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import (
    destroy_all,
    eventually,
    fleetctl,
    ok,
    running,
    table,
    write_units,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

NAME, SUBNET = "flinject", "172.17.46.0/24"
TTL = 5
# The lease outlives agent_ttl by up to one keepalive; fleetd then needs a pass to
# notice. Generous: 2 cores shared with other sessions.
GONE = TTL + 20.0
BACK = 30.0

# Run inside a host: how a TCP connect to argv[1]:argv[2] ends within 2 s.
CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(2.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except socket.timeout:
    print("timeout")
except OSError as exc:
    print(f"error {exc.errno}")
"""


# Run inside a host: bind UDP argv[1]:argv[2], say "ready", then how many
# datagrams arrive within 2 s.
LISTEN = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(0.2)
got, end = 0, time.monotonic() + 2.0
while time.monotonic() < end:
    try:
        s.recv(64)
        got += 1
    except socket.timeout:
        pass
print(got)
"""
SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(10):
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.1)
"""
UDP_PORT = 47001


@pytest.fixture(scope="module")
def faults_lab() -> Iterator[Lab]:
    with own_lab(NAME, SUBNET, hosts=3, etcd_members=3,
                 fleet_env={"FLEET_AGENT_TTL": str(TTL)}) as lab:
        yield lab


@pytest.fixture
def lab(faults_lab: Lab) -> Iterator[Lab]:
    yield faults_lab
    destroy_all(faults_lab)


def host(lab: Lab, name: str) -> tuple[str, str]:
    """(machine id, ip) of ``name``."""
    return next((h.machine_id, h.ip) for h in lab.hosts if h.name == name)


def machines(lab: Lab) -> set[str]:
    out = ok(fleetctl(lab, "list-machines", "--no-legend", "--full", "--fields=machine"))
    return {row[0] for row in table(out)}


def invocation(lab: Lab, name: str, unit: str) -> str:
    """The unit's ActiveState and InvocationID, from systemd in host ``name``."""
    out = ok(lab.exec(name, ["systemctl", "show", unit, "-p", "ActiveState",
                             "-p", "InvocationID"], timeout=20))
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return f"{props['ActiveState']} {props['InvocationID']}"


def connect(lab: Lab, name: str, ip: str, port: int) -> str:
    done = lab.exec(name, [sys.executable, "-c", CONNECT, ip, str(port)], timeout=20)
    return ok(done).strip()


def host_to_bridge(lab: Lab, name: str, gateway: str) -> int:
    """Datagrams from inside host ``name`` that reach a socket here on the bridge."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((gateway, 0))
        sock.settimeout(1.5)
        ok(lab.exec(name, [sys.executable, "-c", SEND, gateway,
                           str(sock.getsockname()[1])], timeout=20))
        got = 0
        with contextlib.suppress(TimeoutError):
            while True:
                sock.recv(64)
                got += 1
        return got


def bridge_to_host(lab: Lab, name: str, ip: str) -> int:
    """Datagrams sent from here (the bridge) that reach a socket inside host ``name``."""
    argv, env = lab.command(name, [sys.executable, "-c", LISTEN, ip, str(UDP_PORT)])
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) as listener:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(10):
                sock.sendto(b"x", (ip, UDP_PORT))
                time.sleep(0.1)
        out, _ = listener.communicate(timeout=20)
    return int(out.strip())


def fault(lab: Lab, name: str) -> str:
    return next(h.fault for h in lab.status()[0] if h.name == name)


def start_pinned(lab: Lab, tmp_path: Path, unit: str, on: str) -> str:
    """Start ``unit`` pinned to host ``on``; await it running there; its invocation."""
    (path,) = write_units(tmp_path, {unit: f"MachineID={host(lab, on)[0]}"})
    ok(fleetctl(lab, "start", path))
    eventually(lambda: running(lab, [unit]) == {unit: on}, timeout=30, what=f"{unit} on {on}")
    inv = invocation(lab, on, unit)
    assert inv.startswith("active "), inv
    return inv


def test_partition_cuts_the_host_off_silently_and_heal_brings_it_back(
    lab: Lab, tmp_path: Path
) -> None:
    unit, victim = "part.service", "core-03"
    machine, ip = host(lab, victim)
    before = start_pinned(lab, tmp_path, unit, victim)
    gateway = lab.etcd_endpoints[0].split("//")[1].split(":")[0]
    assert connect(lab, victim, gateway, 4001) == "connected"
    assert host_to_bridge(lab, victim, gateway) > 0 and bridge_to_host(lab, victim, ip) > 0

    lab.partition(victim)
    lab.partition(victim)  # idempotent
    assert [h.name for h in lab.hosts if h.partitioned] == [victim]
    assert fault(lab, victim) == "partitioned"
    # Silence, not refusal: etcd from inside, another host from inside, and the
    # host from outside (its fleet API) all time out.
    assert connect(lab, victim, gateway, 4001) == "timeout"
    assert connect(lab, victim, host(lab, "core-01")[1], FLEET_API_PORT) == "timeout"
    assert connect(lab, "core-01", ip, FLEET_API_PORT) == "timeout"
    # Each direction on its own: nothing gets out of the host, nothing gets in.
    assert host_to_bridge(lab, victim, gateway) == 0
    assert bridge_to_host(lab, victim, ip) == 0
    eventually(lambda: machine not in machines(lab), timeout=GONE,
               what=f"{victim} gone from list-machines")
    assert invocation(lab, victim, unit) == before  # systemd and the unit ran on

    lab.heal(victim)
    lab.heal(victim)  # a healthy host: nothing to do
    assert not any(h.partitioned for h in lab.hosts)
    assert fault(lab, victim) == "-"
    eventually(lambda: machine in machines(lab), timeout=BACK, what=f"{victim} back")
    eventually(lambda: running(lab, [unit]) == {unit: victim}, timeout=BACK,
               what=f"{unit} reported on {victim} again")
    assert invocation(lab, victim, unit) == before  # never stopped, not restarted


def freezer_state(lab: Lab, name: str) -> str:
    """The host's cgroup freezer, read here: v1 freezer.state or v2 cgroup.events."""
    rel = f"fleetlab-{lab.cfg.name}/{name}"
    v1 = Path("/sys/fs/cgroup/freezer", rel, "freezer.state")
    if v1.exists():
        return v1.read_text().strip()
    for top in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        events = top / rel / "cgroup.events"
        if events.exists():
            return "FROZEN" if "frozen 1" in events.read_text().splitlines() else "THAWED"
    raise AssertionError(f"no freezer for {rel}")


def unit_procs(lab: Lab, name: str, unit: str) -> set[Proc]:
    """The unit's processes (pid and start time), read from its cgroup here: no need
    to ask the host's (maybe frozen) systemd."""
    pids = cgroups.pids(f"fleetlab-{lab.cfg.name}/{name}/system.slice/{unit}")
    return {p for pid in pids if (p := Proc.of(pid)) is not None and p.alive()}


def test_pause_freezes_the_host_and_resume_thaws_it(lab: Lab, tmp_path: Path) -> None:
    unit, victim = "paused.service", "core-02"
    machine, _ = host(lab, victim)
    before = start_pinned(lab, tmp_path, unit, victim)
    procs = unit_procs(lab, victim, unit)
    assert procs, f"no process of {unit} in its cgroup"
    assert freezer_state(lab, victim) == "THAWED"

    lab.pause(victim)
    lab.pause(victim)  # idempotent
    assert freezer_state(lab, victim) == "FROZEN"
    assert [h.name for h in lab.hosts if h.paused] == [victim]
    assert fault(lab, victim) == "paused"
    # Its systemd cannot answer; a command that asks nothing of the host still runs.
    with pytest.raises(subprocess.TimeoutExpired):
        lab.exec(victim, ["systemctl", "is-system-running"], timeout=3)
    assert ok(lab.exec(victim, ["hostname"], timeout=20)).strip() == victim
    eventually(lambda: machine not in machines(lab), timeout=GONE,
               what=f"{victim} gone from list-machines")
    assert freezer_state(lab, victim) == "FROZEN"
    with pytest.raises(subprocess.TimeoutExpired):  # still frozen after the TTL
        lab.exec(victim, ["systemctl", "is-system-running"], timeout=2)

    assert unit_procs(lab, victim, unit) == procs  # frozen, not killed

    lab.resume(victim)
    lab.resume(victim)  # nothing to resume
    assert freezer_state(lab, victim) == "THAWED"
    assert fault(lab, victim) == "-"
    eventually(lambda: machine in machines(lab), timeout=BACK, what=f"{victim} back")
    eventually(lambda: running(lab, [unit]) == {unit: victim}, timeout=BACK,
               what=f"{unit} reported on {victim} again")
    assert invocation(lab, victim, unit) == before  # never stopped, not restarted


def etcdctl_run(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **lab.env()}
    return subprocess.run(["etcdctl", "--dial-timeout=2s", "--command-timeout=3s", *args],
                          capture_output=True, text=True, env=env, timeout=30, check=False)


def member_health(lab: Lab) -> dict[str, str]:
    return {m.name: m.health for m in lab.status()[1]}


def test_etcd_members_stop_and_start_with_their_data(lab: Lab) -> None:
    ok(etcdctl_run(lab, "put", "/faults/before", "kept"))
    with pytest.raises(LabError, match="unknown etcd member 'infra9'"):
        lab.etcd_stop("infra9")

    lab.etcd_stop("infra3")
    assert member_health(lab) == {"infra1": "healthy", "infra2": "healthy",
                                  "infra3": "stopped"}
    out = ok(fleetctl(lab, "--driver", "etcd", "list-machines", "--no-legend", "--full"))
    assert {row[0] for row in table(out)} == {h.machine_id for h in lab.hosts}

    lab.etcd_stop(None)
    assert set(member_health(lab).values()) == {"stopped"}
    assert etcdctl_run(lab, "get", "/faults/before").returncode != 0

    # One member alone has no quorum: start returns once it runs, unhealthy.
    lab.etcd_start("infra1")
    assert member_health(lab) == {"infra1": "unhealthy", "infra2": "stopped",
                                  "infra3": "stopped"}
    lab.etcd_start(None)
    assert set(member_health(lab).values()) == {"healthy"}
    assert ok(etcdctl_run(lab, "get", "--print-value-only", "/faults/before")).strip() == "kept"
    ok(etcdctl_run(lab, "endpoint", "health"))
    eventually(lambda: machines(lab) == {h.machine_id for h in lab.hosts}, timeout=BACK,
               what="every fleetd back on etcd")


def test_cli_names_an_unknown_host_or_member(faults_lab: Lab) -> None:
    env = {**os.environ, "FLEETLAB_NAME": NAME, "FLEETLAB_SUBNET": SUBNET}
    fleetlab = [str(Path(sys.executable).parent / "fleetlab")]
    for args, word in ((["partition", "nosuchhost"], "unknown host 'nosuchhost'"),
                       (["pause", "nosuchhost"], "unknown host 'nosuchhost'"),
                       (["etcd-start", "infra9"], "unknown etcd member 'infra9'")):
        done = subprocess.run([*fleetlab, *args], capture_output=True, text=True, env=env,
                              timeout=30, check=False)
        assert done.returncode != 0 and word in done.stderr, (args, done.stderr)
