"""Patches between two views of the dashboard (pure): what an open page is sent per change.

A page gets the whole view once (on connecting) and then, per change, only the
rows that differ: ``{"set": {TABLE: [row, ...]}, "del": {TABLE: [key, ...]}}``
for the keyed tables (machines by id, units and waiting by name), plus the
top-level values that changed (``leader``, ``this_machine``, ``placements``:
the 50 recent placements are small and sent whole when they change). At 10,000
units a unit's start is then a few hundred bytes, not the megabytes of the
whole view. ``apply`` is the reference of what static/app.js does with one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TABLES = {"machines": "id", "units": "name", "waiting": "name"}
WHOLE = ("this_machine", "leader", "placements")


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The patch turning view ``old`` into view ``new`` ({} when they are equal)."""
    patch: dict[str, Any] = {}
    sets: dict[str, list[Any]] = {}
    dels: dict[str, list[Any]] = {}
    for table, key in TABLES.items():
        before = {row[key]: row for row in old.get(table, ())}
        changed = [row for row in new.get(table, ()) if before.pop(row[key], None) != row]
        if changed:
            sets[table] = changed
        if before:
            dels[table] = sorted(before)
    if sets:
        patch["set"] = sets
    if dels:
        patch["del"] = dels
    for name in WHOLE:
        if old.get(name) != new.get(name):
            patch[name] = new.get(name)
    return patch


def apply(view: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``view`` with ``patch`` applied (a new dict; rows kept sorted by their key)."""
    out = dict(view)
    for table, key in TABLES.items():
        rows = {row[key]: row for row in view.get(table, ())}
        for gone in patch.get("del", {}).get(table, ()):
            rows.pop(gone, None)
        for row in patch.get("set", {}).get(table, ()):
            rows[row[key]] = row
        out[table] = [rows[k] for k in sorted(rows)]
    for name in WHOLE:
        if name in patch:
            out[name] = patch[name]
    return out
