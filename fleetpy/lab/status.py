"""What `fleetlab status` reports about hosts and etcd members."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from fleetpy.lab import cgroups, etcd, hosts, network
from fleetpy.lab.state import HostRecord, LabConfig, MemberRecord


@dataclass(frozen=True)
class HostStatus:
    name: str
    machine_id: str
    ip: str
    pid: int | None  # its systemd, in the root pid namespace
    systemd: str  # is-system-running, or "stopped"
    fleetd: str  # is-active fleet.service, "not-installed", or "-" when stopped
    memory: int | None  # bytes charged to the host's cgroup
    fault: str = "-"  # injected faults in force: "partitioned", "paused" (faults.py)


@dataclass(frozen=True)
class MemberStatus:
    name: str
    client_url: str
    pid: int | None
    health: str  # "healthy", "unhealthy" or "stopped"
    leader: bool


def host_status(cfg: LabConfig, rec: HostRecord) -> HostStatus:
    pid = hosts.running_pid(rec)
    if pid is None:
        return HostStatus(rec.name, rec.machine_id, rec.ip, None, "stopped", "-", None)
    group = f"{cfg.cgroup}/{rec.name}"
    fault = ",".join(name for name, on in (("partitioned", network.isolated(cfg, rec.index)),
                                           ("paused", cgroups.frozen(group))) if on) or "-"
    memory = cgroups.memory_bytes(group)
    if "paused" in fault:  # its systemd cannot answer
        return HostStatus(rec.name, rec.machine_id, rec.ip, pid, "-", "-", memory, fault)
    script = "systemctl is-system-running; systemctl is-active fleet.service"
    out = subprocess.run(
        hosts.nsenter(pid, ["sh", "-c", script]),
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.split()
    systemd = out[0] if out else "unknown"
    if not (cfg.host_dir(rec.name) / "system" / "fleet.service").exists():
        fleetd = "not-installed"
    else:
        fleetd = out[1] if len(out) > 1 else "unknown"
    return HostStatus(rec.name, rec.machine_id, rec.ip, pid, systemd, fleetd, memory, fault)


def member_status(
    rec: MemberRecord, ctx: ssl.SSLContext | None = None, access: Mapping[str, str] | None = None
) -> MemberStatus:
    """``ctx`` and ``access`` (etcdctl's variables): TLS and user of a --secure lab's etcd."""
    if rec.proc is None or not rec.proc.alive():
        return MemberStatus(rec.name, rec.client_url, None, "stopped", False)
    health = "healthy" if etcd.healthy(rec.client_url, ctx=ctx) else "unhealthy"
    if access:
        leader = etcd.is_leader_etcdctl(rec.client_url, access) is True
    else:
        leader = etcd.is_leader(rec.client_url) is True
    return MemberStatus(rec.name, rec.client_url, rec.proc.pid, health, leader)
