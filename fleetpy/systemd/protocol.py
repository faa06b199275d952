"""Frames between the manager and its systemd worker: 4-byte big-endian length + JSON.

manager -> worker: ``{"id": N, "op": "start", "args": {...}}``
worker -> manager: ``{"id": N, "ok": RESULT}`` or ``{"id": N, "err": MSG, "kind": CLASS}``,
and events ``{"ev": "ready"}``, ``{"ev": "changes", "units": [[name, load, active, sub], ...]}``.
"""

from __future__ import annotations

import json
import string
import struct

MYPY = False  # the worker imports this module: no typing at run time
if MYPY:
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


UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"


def decode_unit_path(path: str) -> str | None:
    """Unit name from a systemd object path, or None if it is not a unit path.

    ``/org/freedesktop/systemd1/unit/hello_2eservice`` -> ``hello.service``
    (the label escaping of sd_bus_path_encode: ``_XX`` is the byte 0xXX).
    """
    if not path.startswith(UNIT_PATH_PREFIX):
        return None
    label = path[len(UNIT_PATH_PREFIX) :]
    if not label or "/" in label:
        return None
    out = bytearray()
    i = 0
    while i < len(label):
        ch = label[i]
        if ch == "_":
            hexpair = label[i + 1 : i + 3]
            if len(hexpair) != 2 or not all(c in string.hexdigits for c in hexpair):
                return None
            out.append(int(hexpair, 16))
            i += 3
        else:
            out += ch.encode()
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        return None
