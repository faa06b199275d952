"""Frames between the manager and its systemd worker: 4-byte big-endian length + JSON.

manager -> worker: ``{"id": N, "op": "start", "args": {...}}``
worker -> manager: ``{"id": N, "ok": RESULT}`` or ``{"id": N, "err": MSG, "kind": CLASS}``,
and events ``{"ev": "ready"}``, ``{"ev": "changes", "units": [[name, load, active, sub], ...]}``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024

# Error kinds the manager acts on (class names from pystemd.dbusexc).
NO_SUCH_UNIT = "DBusNoSuchUnitError"


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def split_frames(buf: bytearray) -> list[dict[str, Any]]:
    """Remove and return every complete frame at the start of BUF."""
    out: list[dict[str, Any]] = []
    while len(buf) >= HEADER.size:
        (size,) = HEADER.unpack_from(buf)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes is too large")
        if len(buf) < HEADER.size + size:
            break
        body = bytes(buf[HEADER.size : HEADER.size + size])
        del buf[: HEADER.size + size]
        out.append(json.loads(body))
    return out
