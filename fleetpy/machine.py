"""This machine's identity: machine ID and public IP (I/O at the edge)."""

from __future__ import annotations

import fcntl
import re
import socket
import struct
from pathlib import Path

_MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")
_SIOCGIFADDR = 0x8915


class MachineIdentityError(Exception):
    """The machine ID or public IP cannot be determined."""


def read_machine_id(path: str = "/etc/machine-id") -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise MachineIdentityError(f"cannot read machine ID from {path}: {exc.strerror}") from None
    if not _MACHINE_ID.match(value):
        raise MachineIdentityError(f"{path} does not hold a machine ID (32 hex digits): {value!r}")
    return value


def default_route_interface(route_table: str = "/proc/net/route") -> str | None:
    """The interface of the IPv4 default route, from /proc/net/route."""
    try:
        lines = Path(route_table).read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        if len(cols) > 2 and cols[1] == "00000000":
            return cols[0]
    return None


def interface_ipv4(interface: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(
                sock.fileno(), _SIOCGIFADDR, struct.pack("256s", interface[:15].encode())
            )
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def public_ip(configured: str = "") -> str:
    """The configured public IP, else the address of the default-route interface."""
    if configured:
        return configured
    interface = default_route_interface()
    address = interface_ipv4(interface) if interface else None
    if not address:
        raise MachineIdentityError(
            "cannot find a public IP: no default route with an IPv4 address; set public_ip"
        )
    return address
