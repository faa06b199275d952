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
