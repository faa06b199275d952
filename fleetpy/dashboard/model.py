"""The dashboard's view model: a registry snapshot -> the JSON the page renders (pure).

The snapshot is every entry under the registry prefix (relative key -> value),
kept in step with one resumable watch by :mod:`fleetpy.dashboard.feed`.
Entries that do not decode are left out here (``fleetctl list-unreadable``
says which), never fatal. Placements are schedule changes seen by the watch:
a unit put on a machine, taken off one, or given another target there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from fleetpy.registry.base import WatchUpdate
from fleetpy.registry.codec import (
    LEADER,
    MACHINES,
    SCHEDULE,
    STATES,
    UNITS,
    WAITING,
    CodecError,
    decode_leader,
    decode_machine,
    decode_scheduled,
    decode_state,
    decode_unit,
    decode_waiting,
)
from fleetpy.registry.view import apply_update

T = TypeVar("T")
Snapshot = Mapping[str, bytes]
Change = tuple[str, bytes | None, bytes | None]

READY = "ready"
# The cordon/drain flag, as the `cordon` branch writes it (not on main yet):
# cordoned/<machine_id> = {"state": "cordoned" | "draining", ...}. Read here
# without its codec so that this module does not wait for it; once merged,
# fleetpy.registry.codec.decode_cordon can replace _flag.
CORDONED = "cordoned/"
MACHINE_STATES = ("cordoned", "draining")


def fold(snapshot: dict[str, bytes], update: WatchUpdate) -> list[Change]:
    """Fold one watch update into the snapshot; (key, old, new) per changed entry."""
    return apply_update(snapshot, update, lambda key: key, lambda _k, value, _r: value)


def _decoded(snapshot: Snapshot, prefix: str,
             decode: Callable[[str, bytes], T]) -> list[T]:
    out = []
    for key in sorted(snapshot):
        if key.startswith(prefix):
            try:
                out.append(decode(key, snapshot[key]))
            except (CodecError, ValueError):
                continue
    return out


def _flag(value: bytes) -> str:
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return "cordoned"  # a flag is there, whatever else it says
    state = obj.get("state") if isinstance(obj, dict) else None
    return state if state in MACHINE_STATES else "cordoned"


def machine_state(snapshot: Snapshot, machine_id: str) -> str:
    """``ready``, or what the machine's cordon flag says: ``cordoned``, ``draining``."""
    value = snapshot.get(CORDONED + machine_id)
    return READY if value is None else _flag(value)


def placements_of(changes: Sequence[Change], at: float) -> list[dict[str, Any]]:
    """Schedule changes among ``changes`` as placement records, at wall-clock ``at``."""
    out: list[dict[str, Any]] = []
    for key, old, new in changes:
        if not key.startswith(SCHEDULE):
            continue
        try:
            before = decode_scheduled(key, old) if old is not None else None
            after = decode_scheduled(key, new) if new is not None else None
        except (CodecError, ValueError):
            continue
        entry = after or before
        assert entry is not None
        if before is None and after is not None:
            action = "placed"
        elif after is None:
            action = "unscheduled"
        elif before is not None and before.target != after.target:
            action = f"target {after.target}"
        elif before is not None and before.hash != after.hash:
            action = "new contents"
        else:
            continue
        out.append({"at": at, "unit": entry.name, "machine": entry.machine_id,
                    "action": action, "target": str(entry.target)})
    return out


def view(snapshot: Snapshot, placements: Sequence[Mapping[str, Any]],
         this_machine: str) -> dict[str, Any]:
    """What the page shows, as one JSON-able dict (sorted: equal inputs, equal output)."""
    machines = _decoded(snapshot, MACHINES, decode_machine)
    schedule = _decoded(snapshot, SCHEDULE, decode_scheduled)
    states = {(s.machine_id, s.name): s for s in _decoded(snapshot, STATES, decode_state)}
    units = _decoded(snapshot, UNITS, lambda k, v: decode_unit(k, v))
    waiting = _decoded(snapshot, WAITING, decode_waiting)
    ips = {m.id: m.public_ip for m in machines}
    leader = ""
    if LEADER in snapshot:
        try:
            leader = decode_leader(snapshot[LEADER])
        except (CodecError, ValueError):
            leader = ""

    by_unit: dict[str, list[dict[str, Any]]] = {}
    by_machine: dict[str, list[dict[str, Any]]] = {}
    for entry in schedule:
        st = states.get((entry.machine_id, entry.name))
        placed = {
            "machine": entry.machine_id,
            "ip": ips.get(entry.machine_id, ""),
            "state": str(entry.target),
            "load": st.load_state if st else "",
            "active": st.active_state if st else "",
            "sub": st.sub_state if st else "",
            "hash": st.hash if st else "",
        }
        by_unit.setdefault(entry.name, []).append(placed)
        by_machine.setdefault(entry.machine_id, []).append(
            {"name": entry.name, "state": str(entry.target), "active": placed["active"]})
    reasons = dict(waiting)
    return {
        "this_machine": this_machine,
        "leader": leader,
        "machines": [
            {"id": m.id, "ip": m.public_ip, "metadata": dict(sorted(m.metadata.items())),
             "state": machine_state(snapshot, m.id), "leader": m.id == leader,
             "units": by_machine.get(m.id, [])}
            for m in machines
        ],
        "units": [
            {"name": r.unit.name, "desired": str(r.desired), "hash": r.unit.hash,
             "placements": by_unit.get(r.unit.name, []),
             "waiting": reasons.get(r.unit.name, "")}
            for r in units
        ],
        "waiting": [{"name": name, "reason": reason} for name, reason in waiting],
        "placements": list(reversed(placements)),
    }
