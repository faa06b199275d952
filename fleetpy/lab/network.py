"""The lab's bridge and the hosts' veths (root namespace side only)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
from typing import Any

from fleetpy.lab.errors import LabError
from fleetpy.lab.state import LabConfig


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise LabError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def _links() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(ip("-j", "link", "show").stdout or "[]")
    return out


def link_exists(name: str) -> bool:
    return ip("link", "show", "dev", name, check=False).returncode == 0


def lab_links(cfg: LabConfig) -> list[str]:
    """The lab's bridge and every veth attached to it or named like the lab's."""
    names = {cfg.veth(i) for i in range(1, 100)}
    found = []
    for link in _links():
        name = link["ifname"]
        if name == cfg.bridge or link.get("master") == cfg.bridge or name in names:
            found.append(name)
    return found


def check_subnet_free(cfg: LabConfig) -> None:
    """Refuse a subnet that an interface other than the lab's bridge already uses."""
    ours = cfg.network
    out = json.loads(ip("-j", "-4", "addr", "show").stdout or "[]")
    for link in out:
        if link["ifname"] == cfg.bridge:
            continue
        for addr in link.get("addr_info", []):
            net = ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
            if net.overlaps(ours) and net.prefixlen >= ours.prefixlen:
                raise LabError(
                    f"subnet {cfg.subnet} is in use by {addr['local']} on {link['ifname']}; "
                    "choose another with --subnet"
                )


def bridge_mac(cfg: LabConfig) -> str:
    """A fixed, locally administered MAC for the bridge, from the lab name.

    Left alone, a bridge takes the lowest MAC of its ports and changes it as
    hosts come and go; hosts then send to a stale gateway MAC until their ARP
    entry expires (seconds of lost packets after every host-start).
    """
    digest = hashlib.sha1(cfg.name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def create_bridge(cfg: LabConfig) -> None:
    ip("link", "add", "name", cfg.bridge, "address", bridge_mac(cfg), "type", "bridge")
    ip("addr", "add", f"{cfg.gateway}/{cfg.network.prefixlen}", "dev", cfg.bridge)
    ip("link", "set", cfg.bridge, "up")


def add_veth(cfg: LabConfig, index: int, pid: int) -> None:
    """A veth pair: ``eth0`` inside the namespace of ``pid``, the other end on the bridge."""
    veth = cfg.veth(index)
    delete_link(veth)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(pid))
    ip("link", "set", veth, "master", cfg.bridge, "up")


def delete_link(name: str) -> None:
    ip("link", "del", name, check=False)


# -- a cut cable (fleetlab partition/heal) ---------------------------------------------
#
# Both ends of a host's veth get a ``blackhole`` root qdisc: every packet the
# bridge sends to the host and every packet the host sends out is dropped and
# reported sent, so peers see silence (connections time out, nothing is
# refused). The qdisc is part of every Linux with tc (no classifier, action or
# netem module needed); the host's processes keep running.

HOST_SIDE = "eth0"


def _tc(args: list[str], netns_pid: int | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["tc", *args]
    if netns_pid is not None:
        argv = ["nsenter", "-t", str(netns_pid), "-n", *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except FileNotFoundError:
        raise LabError("tc not found in PATH: install it (apt-get install iproute2)") from None
    if check and done.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done


def _blackholed(dev: str, netns_pid: int | None = None) -> bool:
    done = _tc(["-j", "qdisc", "show", "dev", dev], netns_pid, check=False)
    if done.returncode != 0:
        return False
    qdiscs: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return any(q.get("kind") == "blackhole" and q.get("root") for q in qdiscs)


def isolated(cfg: LabConfig, index: int) -> bool:
    """Whether host ``index``'s link is cut (its bridge-side veth drops everything)."""
    return _blackholed(cfg.veth(index))


def cut(cfg: LabConfig, index: int, pid: int) -> None:
    """Drop all traffic of host ``index`` (its PID 1 is ``pid``), both directions."""
    _tc(["qdisc", "replace", "dev", HOST_SIDE, "root", "blackhole"], pid)
    _tc(["qdisc", "replace", "dev", cfg.veth(index), "root", "blackhole"])


def mend(cfg: LabConfig, index: int, pid: int | None) -> None:
    """Undo ``cut``; either end already clear (or gone with a stopped host) is fine."""
    if link_exists(cfg.veth(index)) and _blackholed(cfg.veth(index)):
        _tc(["qdisc", "del", "dev", cfg.veth(index), "root"])
    if pid is not None and _blackholed(HOST_SIDE, pid):
        _tc(["qdisc", "del", "dev", HOST_SIDE, "root"], pid)
