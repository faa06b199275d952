"""``fleetlab up --discovery``: etcd bootstrapped through a discovery URL, as the seed's
CoreOS cluster was through discovery.etcd.io, on the lab's own discovery service.

Lab ``fldisc`` (172.17.59.0/24): 3 etcd members, 1 host. The tests run in file order:
the 4th member tests leave a proxy behind, the down test takes the lab down, and the
last test boots it again with --secure.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab, LabError
from fleetpy.lab.procs import Proc
from fleetpy.lab.state import DiscoveryRecord, LabState, load
from tests.lab.conftest import fresh_lab, require_root, session_lock
from tests.lab.fleet_helpers import etcdctl, eventually, fleetctl, table

pytestmark = [pytest.mark.lab, pytest.mark.timeout(90)]

NAME, SUBNET = "fldisc", "172.17.59.0/24"
ARGS = ("--name", NAME, "--subnet", SUBNET)
FLEETLAB = str(Path(sys.executable).with_name("fleetlab"))


@pytest.fixture(scope="module")
def disc_lab() -> Iterator[Lab]:
    require_root()
    with session_lock(NAME):
        lab = fresh_lab(NAME, SUBNET)
        lab.up(hosts=1, etcd_members=3, discovery=True)
        try:
            yield lab
        finally:
            with contextlib.suppress(LabError):
                lab.down()


@pytest.fixture(scope="module")
def secure_disc_lab(disc_lab: Lab) -> Iterator[Lab]:
    """The same lab again (``disc_lab``'s tests took it down), with TLS and auth."""
    with contextlib.suppress(LabError):
        disc_lab.down()
    disc_lab.up(hosts=1, etcd_members=3, secure="cert", discovery=True)
    try:
        yield disc_lab
    finally:
        with contextlib.suppress(LabError):
            disc_lab.down()


def _state(lab: Lab) -> LabState:
    state = load(lab.cfg)
    assert state is not None
    return state


def _disc(lab: Lab) -> DiscoveryRecord:
    disc = _state(lab).discovery
    assert disc is not None, "the lab state names no discovery service"
    return disc


def _curl(url: str, *args: str) -> dict[str, object]:
    done = subprocess.run(["curl", "-sS", "--max-time", "5", url, *args], capture_output=True,
                          text=True, check=True, timeout=10)
    data: dict[str, object] = json.loads(done.stdout)
    return data


def _members(lab: Lab) -> dict[str, str]:
    """etcd's member list: member id (hex) -> name."""
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["etcdctl", f"--endpoints={','.join(lab.etcd_endpoints)}", "member",
                           "list", "-w", "json"], capture_output=True, text=True, env=env,
                          check=True, timeout=30)
    return {f"{m['ID']:x}": m["name"] for m in json.loads(done.stdout)["members"]}


def _directory(url: str) -> dict[str, str]:
    """The discovery directory as curl reads it over v2: member id -> "name=peer-url"."""
    node = _curl(url)["node"]
    assert isinstance(node, dict)
    return {n["key"].rsplit("/", 1)[-1]: n["value"] for n in node.get("nodes", [])}


def _cmdline(proc: Proc | None) -> list[str]:
    assert proc is not None and proc.alive()
    return Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")


def _fleetlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLEETLAB, *ARGS, *args], capture_output=True, text=True,
                          check=False, timeout=60)


def test_members_bootstrap_through_the_discovery_url(disc_lab: Lab) -> None:
    disc = _disc(disc_lab)
    assert disc.url.startswith("http://172.17.59.1:2379/v2/keys/discovery/")
    assert disc.size == 3
    assert sorted(_members(disc_lab).values()) == ["infra1", "infra2", "infra3"]
    for m in _state(disc_lab).members:
        argv = _cmdline(m.proc)
        assert f"--discovery={disc.url}" in argv, argv
        assert not [a for a in argv if a.startswith("--initial-cluster")], argv


def test_discovery_directory_holds_the_three_members_and_size_3(disc_lab: Lab) -> None:
    disc = _disc(disc_lab)
    size = _curl(f"{disc.url}/_config/size")["node"]
    assert isinstance(size, dict) and size["value"] == "3"
    directory = _directory(disc.url)
    members = _members(disc_lab)
    assert set(directory) == set(members)  # each member registered under its own id
    assert sorted(directory.values()) == sorted(
        f"{m.name}={m.peer_url}" for m in _state(disc_lab).members)
    # the service is an etcd of the lab's own, with the v2 API on
    assert "--enable-v2" in _cmdline(disc.server.proc)


def test_fleet_runs_on_the_discovered_cluster(disc_lab: Lab) -> None:
    machine = disc_lab.hosts[0].machine_id
    rows = eventually(
        lambda: table(fleetctl(disc_lab, "list-machines", "--no-legend", "--full").stdout),
        timeout=30, what="fleetctl list-machines")
    assert [r[0] for r in rows] == [machine]


def test_status_shows_the_discovery_url(disc_lab: Lab) -> None:
    done = _fleetlab("status")
    assert done.returncode == 0, done.stderr
    assert f"DISCOVERY  {_disc(disc_lab).url}  (size 3, 3 registered)" in done.stdout


def test_a_fourth_member_with_fallback_exit_is_refused(disc_lab: Lab) -> None:
    url = _disc(disc_lab).url
    done = _fleetlab("discovery-join", "--fallback=exit")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("fleetlab: infra4 refused: discovery: cluster is full"), lines
    assert "(3 of size 3 registered" in lines[-1]
    assert sorted(_members(disc_lab).values()) == ["infra1", "infra2", "infra3"]
    assert len(_directory(url)) == 3
    assert _disc(disc_lab).proxies == ()
    assert not disc_lab.cfg.member_dir("infra4").exists()


def test_a_fourth_member_becomes_a_proxy_by_default(disc_lab: Lab) -> None:
    url = _disc(disc_lab).url
    done = _fleetlab("discovery-join")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("infra4: discovery cluster is full (3 of size 3 registered)")
    assert "runs as a proxy" in done.stdout
    (proxy,) = _disc(disc_lab).proxies
    argv = _cmdline(proxy.proc)
    assert f"--discovery={url}" in argv and "--discovery-fallback=proxy" in argv
    members = _members(disc_lab)
    assert sorted(members.values()) == ["infra1", "infra2", "infra3"]  # not a member
    assert len(_directory(url)) == 3
    # it forwards HTTP requests to the members: one of them answers
    answer = _curl(f"{proxy.client_url}/v3/kv/range", "-XPOST", "-d", '{"key": "Lw=="}')
    header = answer["header"]
    assert isinstance(header, dict) and f"{int(header['member_id']):x}" in members
    assert proxy.proc is not None
    assert f"PROXY      infra4  {proxy.client_url}  pid {proxy.proc.pid}" in _fleetlab(
        "status").stdout


def test_down_stops_the_discovery_service_and_removes_its_data(disc_lab: Lab) -> None:
    disc = _disc(disc_lab)
    procs = [p.proc for p in (disc.server, *disc.proxies) if p.proc is not None]
    assert len(procs) == 2 and all(p.alive() for p in procs)
    data = disc_lab.cfg.member_dir("discovery")
    assert data.is_dir()
    disc_lab.down()
    assert not [p for p in procs if p.alive()]
    assert not data.exists()
    assert not disc_lab.cfg.state_dir.exists()


def test_a_secure_lab_bootstraps_through_discovery_and_gets_an_https_proxy(
    secure_disc_lab: Lab,
) -> None:
    disc = _disc(secure_disc_lab)
    listed = json.loads(etcdctl(secure_disc_lab, "member", "list", "-w", "json"))["members"]
    assert sorted(m["name"] for m in listed) == ["infra1", "infra2", "infra3"]
    assert len(_directory(disc.url)) == 3
    done = _fleetlab("discovery-join")
    assert done.returncode == 0, done.stderr
    assert "runs as a proxy" in done.stdout and "https://172.17.59.1:4004" in done.stdout
