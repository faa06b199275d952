"""A lab's identity (derived names) and its persisted state file."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from fleetpy.lab.errors import LabError
from fleetpy.lab.procs import Proc

log = logging.getLogger("fleetpy.lab")

DEFAULT_NAME = "fleetlab"
DEFAULT_SUBNET = "172.17.8.0/24"
STATE_ROOT = Path("/var/lib/fleetlab")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,9}$")
MAX_HOSTS = 99
MAX_MEMBERS = 99
FLEET_API_PORT = 49153


@dataclass(frozen=True)
class LabConfig:
    """Everything named after the lab: bridge, cgroups, addresses, ports."""

    name: str = DEFAULT_NAME
    state_dir: Path = field(default_factory=lambda: STATE_ROOT / DEFAULT_NAME)
    subnet: str = DEFAULT_SUBNET

    @classmethod
    def make(cls, name: str, state_dir: Path | None, subnet: str) -> LabConfig:
        if not NAME_RE.match(name):
            raise LabError(
                f"bad lab name {name!r}: use 1-10 of a-z, 0-9, '-' (it names the bridge)"
            )
        try:
            net = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise LabError(f"bad subnet {subnet!r}: {exc}") from None
        if net.prefixlen > 24:
            raise LabError(f"subnet {subnet} is too small: hosts use .101 and up; use a /24")
        return cls(name, (state_dir or STATE_ROOT / name).absolute(), str(net))

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge(self) -> str:
        return f"flb-{self.name}"

    @property
    def gateway(self) -> str:
        """The bridge's address: etcd members listen here."""
        return str(self.network.network_address + 1)

    def host_name(self, index: int) -> str:
        return f"core-{index:02d}"

    def host_ip(self, index: int) -> str:
        return str(self.network.network_address + 100 + index)

    def veth(self, index: int) -> str:
        return f"v{self.name}-{index:02d}"

    def member_name(self, index: int) -> str:
        return f"infra{index}"

    def client_url(self, index: int) -> str:
        return f"http://{self.gateway}:{4000 + index}"

    def peer_url(self, index: int) -> str:
        return f"http://{self.gateway}:{7000 + index}"

    @property
    def cgroup(self) -> str:
        return f"fleetlab-{self.name}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "lab.json"

    def host_dir(self, host: str) -> Path:
        return self.state_dir / "hosts" / host

    def member_dir(self, member: str) -> Path:
        return self.state_dir / "etcd" / member


@dataclass(frozen=True)
class HostRecord:
    name: str
    index: int
    ip: str
    machine_id: str
    proc: Proc | None = None  # the host's `unshare` process; its child is systemd
    metadata: str = ""  # fleetd's machine metadata, "k=v,k=v" (FLEET_METADATA)
    partitioned: bool = False  # fleetlab partition: its link drops everything (faults.py)
    paused: bool = False  # fleetlab pause: its cgroup is frozen (faults.py)


@dataclass(frozen=True)
class MemberRecord:
    name: str
    index: int
    client_url: str
    peer_url: str
    proc: Proc | None = None
    local_url: str = ""  # also listens here for clients (127.0.0.1:400N in lab fleetlab)


@dataclass(frozen=True)
class DiscoveryRecord:
    """``fleetlab up --discovery``: the lab's discovery etcd and the URL made on it
    (discovery.py)."""

    url: str  # the discovery URL the members were started with
    size: int  # its _config/size
    server: MemberRecord  # the discovery service: an etcd of its own with the v2 API
    proxies: tuple[MemberRecord, ...] = ()  # extra members that fell back to proxies


@dataclass(frozen=True)
class HollowRecord:
    """One hollow worker process: machines first..first+count-1 (fleetpy.hollow)."""

    index: int
    first: int
    count: int
    control: str  # its control socket
    proc: Proc | None = None


@dataclass(frozen=True)
class LabState:
    """What ``up`` built, rewritten after every change."""

    name: str
    subnet: str
    keep: tuple[str, ...] = ()  # paths bind-mounted into hosts (checkout, venv)
    venv: str = ""
    hosts: tuple[HostRecord, ...] = ()
    members: tuple[MemberRecord, ...] = ()
    fleet_env: dict[str, str] = field(default_factory=dict)  # extra FLEET_* for every fleetd
    secure: str = ""  # "", "cert" or "password": see secure.py
    hollow: tuple[HollowRecord, ...] = ()  # hollow machine workers (fleetlab hollow)
    discovery: DiscoveryRecord | None = None  # a lab bootstrapped through discovery
    local_ip: str = ""  # loopback address members also serve clients on (etcd.local_url)

    def host(self, name: str) -> HostRecord:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts)
        raise LabError(f"unknown host {name!r}: this lab has {known}")

    def member(self, name: str) -> MemberRecord:
        for m in self.members:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.members)
        raise LabError(f"unknown etcd member {name!r}: this lab has {known}")

    def with_host(self, rec: HostRecord) -> LabState:
        hosts = tuple(rec if h.name == rec.name else h for h in self.hosts)
        if rec.name not in {h.name for h in self.hosts}:
            hosts = (*hosts, rec)
        return replace(self, hosts=hosts)

    def with_member(self, rec: MemberRecord) -> LabState:
        members = tuple(m for m in self.members if m.name != rec.name)
        return replace(self, members=tuple(sorted((*members, rec), key=lambda m: m.index)))

    def without_member(self, name: str) -> LabState:
        return replace(self, members=tuple(m for m in self.members if m.name != name))

    def processes(self) -> list[Proc]:
        recs: list[HostRecord | MemberRecord | HollowRecord] = [
            *self.hosts, *self.members, *self.hollow]
        if self.discovery is not None:
            recs += [self.discovery.server, *self.discovery.proxies]
        return [r.proc for r in recs if r.proc is not None]

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]


def save(cfg: LabConfig, state: LabState) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = cfg.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(tmp, cfg.state_file)


def load(cfg: LabConfig) -> LabState | None:
    try:
        data = json.loads(cfg.state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {cfg.state_file}: {exc}; run `fleetlab down`") from None
    hosts = tuple(HostRecord(**{**h, "proc": Proc.from_json(h["proc"])}) for h in data["hosts"])
    members = tuple(
        MemberRecord(**{**m, "proc": Proc.from_json(m["proc"])}) for m in data["members"]
    )
    return LabState(
        name=data["name"],
        subnet=data["subnet"],
        keep=tuple(data["keep"]),
        venv=data["venv"],
        hosts=hosts,
        members=members,
        fleet_env=dict(data.get("fleet_env", {})),
        secure=data.get("secure", ""),
        hollow=tuple(HollowRecord(**{**w, "proc": Proc.from_json(w["proc"])})
                     for w in data.get("hollow", [])),
        discovery=_discovery(data.get("discovery")),
        local_ip=data.get("local_ip", ""),
    )


def _member(m: dict[str, Any]) -> MemberRecord:
    return MemberRecord(**{**m, "proc": Proc.from_json(m["proc"])})


def _discovery(data: dict[str, Any] | None) -> DiscoveryRecord | None:
    if data is None:
        return None
    return DiscoveryRecord(data["url"], int(data["size"]), _member(data["server"]),
                           tuple(_member(m) for m in data.get("proxies", [])))


@contextlib.contextmanager
def locked(cfg: LabConfig, timeout: float = 120.0) -> Iterator[None]:
    """Serialise commands that change a lab, across processes.

    The lock is an abstract unix socket name: the kernel drops it when its
    holder dies, and it leaves no file behind.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    waiting = False
    try:
        while True:
            try:
                sock.bind(f"\0fleetlab-lock-{cfg.name}")
                break
            except OSError:
                if not waiting:
                    log.info("waiting for another fleetlab command on lab %s", cfg.name)
                    waiting = True
                if time.monotonic() > deadline:
                    raise LabError(
                        f"lab {cfg.name} is busy: another fleetlab command is changing it"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        sock.close()
