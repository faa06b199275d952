"""Keys and JSON values of the registry (pure: no I/O).

Shared by EtcdRegistry and MemoryRegistry, and by consumers of ``Registry.watch``
that receive raw values: e.g. an agent watching ``schedule_prefix(machine_id)``
decodes each item with :func:`decode_scheduled`.

Keys here are relative to the registry prefix (see :mod:`fleetpy.registry.base`).
Values are compact JSON with sorted keys, so that equal values are equal bytes
(the leader key's value is compared byte for byte in engine transactions).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from fleetpy.model.cordon import Cordon, MachineState
from fleetpy.model.names import InvalidUnitName, validate_unit_name
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.model.unitfile import unit_hash
from fleetpy.registry.base import DEFAULT_PREFIX, UnitRecord

UNITS = "units/"
SCHEDULE = "schedule/"
MACHINES = "machines/"
STATES = "states/"
WAITING = "waiting/"
REFUSED = "refused/"
LEADER = "engine/leader"
CORDONED = "cordoned/"


class CodecError(ValueError):
    """A stored value or key does not have the expected shape."""


def normalize_prefix(prefix: str = DEFAULT_PREFIX) -> str:
    """``/fleet`` -> ``/fleet/``; the prefix must not be empty."""
    if not prefix:
        raise ValueError("registry prefix must not be empty")
    return prefix if prefix.endswith("/") else prefix + "/"


def check_name(what: str, name: str) -> str:
    """Names become key segments: non-empty, no ``/``."""
    if not name or "/" in name:
        raise ValueError(f"invalid {what} {name!r}: must be non-empty and contain no '/'")
    return name


# keys ----------------------------------------------------------------------


def unit_key(name: str) -> str:
    return UNITS + check_name("unit name", name)


def schedule_prefix(machine_id: str | None = None) -> str:
    """``schedule/`` or ``schedule/<machine_id>/``: what one agent watches."""
    if machine_id is None:
        return SCHEDULE
    return f"{SCHEDULE}{check_name('machine id', machine_id)}/"


def schedule_key(machine_id: str, name: str) -> str:
    return schedule_prefix(machine_id) + check_name("unit name", name)


def machine_key(machine_id: str) -> str:
    return MACHINES + check_name("machine id", machine_id)


def states_prefix(machine_id: str | None = None) -> str:
    if machine_id is None:
        return STATES
    return f"{STATES}{check_name('machine id', machine_id)}/"


def state_key(machine_id: str, name: str) -> str:
    return states_prefix(machine_id) + check_name("unit name", name)


def waiting_key(name: str) -> str:
    return WAITING + check_name("unit name", name)


def refused_prefix(machine_id: str | None = None) -> str:
    if machine_id is None:
        return REFUSED
    return f"{REFUSED}{check_name('machine id', machine_id)}/"


def refused_key(machine_id: str, name: str) -> str:
    return refused_prefix(machine_id) + check_name("unit name", name)


def cordon_key(machine_id: str) -> str:
    return CORDONED + check_name("machine id", machine_id)


def split_key(key: str, prefix: str) -> list[str]:
    """``split_key("schedule/m1/a.service", "schedule/")`` -> ``["m1", "a.service"]``."""
    if not key.startswith(prefix):
        raise CodecError(f"key {key!r} is not under {prefix!r}")
    return key[len(prefix) :].split("/")


def _unit_name(key: str, name: str) -> str:
    """A unit name taken from a key: valid as systemd would have it, else CodecError."""
    try:
        validate_unit_name(name)
    except InvalidUnitName as e:
        raise CodecError(f"{key}: {e}") from None
    if name.startswith("."):
        raise CodecError(f"{key}: unit name {name!r} starts with '.' (no agent can write it)")
    return name


def _one_part(key: str, prefix: str) -> str:
    parts = split_key(key, prefix)
    if len(parts) != 1 or not parts[0]:
        raise CodecError(f"key {key!r}: expected {prefix}<name>")
    return parts[0]


def _two_part(key: str, prefix: str) -> tuple[str, str]:
    parts = split_key(key, prefix)
    if len(parts) != 2 or not all(parts):
        raise CodecError(f"key {key!r}: expected {prefix}<machine_id>/<name>")
    return parts[0], _unit_name(key, parts[1])


# values --------------------------------------------------------------------


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _load(value: bytes, fields: tuple[str, ...], where: str) -> dict[str, Any]:
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError) as e:
        raise CodecError(f"{where}: not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise CodecError(f"{where}: expected a JSON object")
    missing = [f for f in fields if f not in obj]
    if missing:
        raise CodecError(f"{where}: missing {', '.join(missing)}")
    return obj


def _str(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise CodecError(f"{where}: {name} must be a string")
    return value


def _target(obj: Mapping[str, Any], name: str, where: str) -> TargetState:
    try:
        return TargetState(obj[name])
    except ValueError:
        raise CodecError(f"{where}: {name}={obj[name]!r} is not a target state") from None


def encode_unit(unit: UnitFile, desired: TargetState) -> bytes:
    return _dump({"hash": unit.hash, "contents": unit.contents, "desired": str(desired)})


def decode_unit(key: str, value: bytes, revision: int = 0) -> UnitRecord:
    """``units/<name>``: a valid name, and a hash that is the contents' hash."""
    name = _unit_name(key, _one_part(key, UNITS))
    obj = _load(value, ("hash", "contents", "desired"), key)
    unit = UnitFile(name=name, contents=_str(obj, "contents", key), hash=_str(obj, "hash", key))
    if unit_hash(unit.contents) != unit.hash:
        raise CodecError(f"{key}: hash {unit.hash[:40]!r} is not the hash of its contents")
    return UnitRecord(unit=unit, desired=_target(obj, "desired", key), revision=revision)


def encode_scheduled(entry: ScheduledUnit) -> bytes:
    return _dump({"hash": entry.hash, "contents": entry.contents, "target": str(entry.target)})


def decode_scheduled(key: str, value: bytes) -> ScheduledUnit:
    """Decode ``schedule/<machine_id>/<name>`` (a key as ``Registry.watch`` yields it)."""
    machine_id, name = _two_part(key, SCHEDULE)
    obj = _load(value, ("hash", "contents", "target"), key)
    return ScheduledUnit(
        name=name,
        machine_id=machine_id,
        target=_target(obj, "target", key),
        hash=_str(obj, "hash", key),
        contents=_str(obj, "contents", key),
    )


def encode_machine(machine: Machine) -> bytes:
    """``dashboard`` only when set: a record without one is what older fleetd wrote."""
    obj: dict[str, Any] = {"id": machine.id, "public_ip": machine.public_ip,
                           "metadata": machine.metadata}
    if machine.dashboard:
        obj["dashboard"] = machine.dashboard
    return _dump(obj)


def decode_machine(key: str, value: bytes) -> Machine:
    """``machines/<id>``: the record's id is the key's; ``dashboard`` may be missing
    (no dashboard there, or an older fleetd's record)."""
    machine_id = _one_part(key, MACHINES)
    obj = _load(value, ("id", "public_ip", "metadata"), key)
    if _str(obj, "id", key) != machine_id:
        raise CodecError(f"{key}: id {str(obj['id'])[:40]!r} is not the key's machine id")
    metadata = obj["metadata"]
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CodecError(f"{key}: metadata must map strings to strings")
    return Machine(
        id=_str(obj, "id", key), public_ip=_str(obj, "public_ip", key), metadata=metadata,
        dashboard=_str(obj, "dashboard", key) if "dashboard" in obj else "",
    )


def encode_state(state: UnitState) -> bytes:
    return _dump(
        {
            "load": state.load_state,
            "active": state.active_state,
            "sub": state.sub_state,
            "hash": state.hash,
            "fleet": state.fleet,
            "error": state.error,
        }
    )


def decode_state(key: str, value: bytes) -> UnitState:
    """``fleet`` and ``error`` may be missing (a report of an older fleetd): "" then."""
    machine_id, name = _two_part(key, STATES)
    obj = _load(value, ("load", "active", "sub", "hash"), key)
    return UnitState(
        name=name,
        machine_id=machine_id,
        load_state=_str(obj, "load", key),
        active_state=_str(obj, "active", key),
        sub_state=_str(obj, "sub", key),
        hash=_str(obj, "hash", key),
        fleet=_str(obj, "fleet", key) if "fleet" in obj else "",
        error=_str(obj, "error", key) if "error" in obj else "",
    )


def encode_waiting(reason: str) -> bytes:
    return _dump({"reason": reason})


def decode_waiting(key: str, value: bytes) -> tuple[str, str]:
    """-> (unit name, reason)."""
    name = _unit_name(key, _one_part(key, WAITING))
    return name, _str(_load(value, ("reason",), key), "reason", key)


def encode_refusal(reason: str) -> bytes:
    return _dump({"reason": reason})


def decode_refusal(key: str, value: bytes) -> tuple[str, str, str]:
    """``refused/<machine_id>/<name>`` -> (machine id, unit name, reason)."""
    machine_id, name = _two_part(key, REFUSED)
    return machine_id, name, _str(_load(value, ("reason",), key), "reason", key)


def encode_cordon(cordon: Cordon) -> bytes:
    return _dump({
        "state": cordon.state.value, "by": cordon.by, "at": cordon.at,
        "reason": cordon.reason, "move": list(cordon.move), "stop": list(cordon.stop),
        "stop_global": cordon.stop_global, "max_parallel": cordon.max_parallel,
        **({} if cordon.deadline is None else {"deadline": cordon.deadline}),
    })


def _names(obj: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    value = obj.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CodecError(f"{where}: {name} must be a list of unit names")
    return tuple(value)


def decode_cordon(key: str, value: bytes) -> Cordon:
    """``cordoned/<machine_id>`` -> the Cordon."""
    parts = split_key(key, CORDONED)
    if len(parts) != 1 or not parts[0]:
        raise CodecError(f"key {key!r}: expected {CORDONED}<machine_id>")
    obj = _load(value, ("state",), key)
    try:
        state = MachineState(_str(obj, "state", key))
    except ValueError:
        raise CodecError(f"{key}: state must be cordoned or draining") from None
    if state == MachineState.READY:
        raise CodecError(f"{key}: state must be cordoned or draining")
    return Cordon(
        machine_id=parts[0], state=state,
        by=str(obj.get("by", "")), at=str(obj.get("at", "")), reason=str(obj.get("reason", "")),
        move=_names(obj, "move", key), stop=_names(obj, "stop", key),
        stop_global=bool(obj.get("stop_global", False)),
        max_parallel=_max_parallel(obj, key), deadline=_deadline(obj, key),
    )


def _max_parallel(obj: Mapping[str, Any], where: str) -> int:
    """A drain's max_parallel: 1 in a record written before it existed."""
    value = obj.get("max_parallel", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CodecError(f"{where}: max_parallel must be a whole number >= 1")
    return value


def _deadline(obj: Mapping[str, Any], where: str) -> float | None:
    """A drain's deadline (Unix time): None when absent (or null)."""
    value = obj.get("deadline")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CodecError(f"{where}: deadline must be a Unix time (a number)")
    return float(value)


def encode_leader(machine_id: str) -> bytes:
    return _dump({"machine_id": machine_id})


def decode_leader(value: bytes) -> str:
    return _str(_load(value, ("machine_id",), LEADER), "machine_id", LEADER)


def decode_entry(key: str, value: bytes) -> None:
    """Check any registry entry by the prefix its key is under; CodecError if unusable.

    Keys under none of the known prefixes are not fleetpy's to judge: accepted.
    """
    if key.startswith(UNITS):
        decode_unit(key, value)
    elif key.startswith(SCHEDULE):
        decode_scheduled(key, value)
    elif key.startswith(STATES):
        decode_state(key, value)
    elif key.startswith(MACHINES):
        decode_machine(key, value)
    elif key.startswith(WAITING):
        decode_waiting(key, value)
    elif key.startswith(CORDONED):
        decode_cordon(key, value)
    elif key == LEADER:
        decode_leader(value)
    elif key.startswith(LEADER):
        raise CodecError(f"key {key!r}: nothing belongs under {LEADER}")
