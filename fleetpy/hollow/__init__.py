"""Hollow machines: many simulated machines per process, running the real node code.

A hollow machine is a :class:`fleetpy.node.Node` (registration, lease,
presence, the real agent) whose systemd is an in-memory
:class:`fleetpy.systemd.hollow.HollowUnitManager`; the engine stays on real
hosts. One worker process (``python -m fleetpy.hollow.worker``) runs a range
of hollow machines on one etcd connection and answers a small control
protocol on a unix socket (``status``, ``kill N``). ``fleetlab hollow`` starts
and drives the workers of a lab (fleetpy.lab.hollow).
"""

from __future__ import annotations

import hashlib

CONTROL_LIMIT = 1 << 20  # bytes of one control request or answer


def machine_id(lab: str, index: int) -> str:
    """A stable 32-hex machine id for hollow machine ``index`` of ``lab``."""
    return hashlib.sha256(f"fleetlab-hollow:{lab}:{index}".encode()).hexdigest()[:32]


def machine_ip(index: int) -> str:
    """A loopback address for hollow machine ``index`` (nothing ever connects to it)."""
    return f"127.77.{index // 250}.{index % 250 + 1}"


def machine_name(index: int) -> str:
    return f"hollow-{index:04d}"
