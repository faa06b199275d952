"""Machine metadata: ``key=value`` pairs that ``[X-Fleet] MachineMetadata=`` matches.

A machine's metadata comes from fleetd's config (``metadata=region=us-east,disk=ssd``)
and may be changed at runtime (``fleetctl set-metadata``). A runtime change is
kept by the machine's fleetd as *overrides* of its configured metadata, so that
a restarted fleetd still has it and a changed config still counts for the keys
nobody overrode. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VALUE = re.compile(r"^[^\s,=\"'\\]+$")
MAX_KEY = 255  # characters of a key
MAX_VALUE = 1024  # characters of a value
MAX_CHANGE = 100  # keys set or removed by one change


class InvalidMetadata(ValueError):
    """A metadata key or value fleet could not match; the message says which and why."""


def _shown(text: str) -> str:
    """``repr`` of ``text``, cut after 60 characters."""
    return repr(text) if len(text) <= 60 else repr(text[:60]) + "..."


def check_key(key: str) -> str:
    if len(key) > MAX_KEY:
        raise InvalidMetadata(f"invalid metadata key {_shown(key)}: longer than {MAX_KEY} "
                              "characters")
    if not KEY.match(key):
        raise InvalidMetadata(
            f"invalid metadata key {_shown(key)}: letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    return key


def check_value(key: str, value: str) -> str:
    if len(value) > MAX_VALUE:
        raise InvalidMetadata(f"invalid metadata value {_shown(value)} for {key}: "
                              f"longer than {MAX_VALUE} characters")
    if not VALUE.match(value):
        raise InvalidMetadata(
            f"invalid metadata value {_shown(value)} for {key}: not empty, no blanks, "
            "commas, '=', quotes or backslashes"
        )
    return value


def parse_assignments(args: Iterable[str]) -> dict[str, str]:
    """``["region=us-east", "disk=ssd"]`` -> {"region": "us-east", "disk": "ssd"}."""
    out: dict[str, str] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq:
            raise InvalidMetadata(f"invalid metadata {arg!r}: expected key=value")
        out[check_key(key)] = check_value(key, value)
    return out


@dataclass(frozen=True, slots=True)
class MetadataChange:
    """Keys to set (or change) and keys to remove, checked."""

    set: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    @classmethod
    def make(cls, set: Mapping[str, str], remove: Sequence[str]) -> MetadataChange:
        if len(set) + len(remove) > MAX_CHANGE:
            raise InvalidMetadata(f"too many metadata keys in one change: "
                                  f"{len(set) + len(remove)}, the limit is {MAX_CHANGE}")
        for key, value in set.items():
            check_key(key)
            check_value(key, value)
        for key in remove:
            check_key(key)
        both = sorted(set.keys() & frozenset(remove))
        if both:
            raise InvalidMetadata(f"metadata key(s) both set and removed: {', '.join(both)}")
        if not set and not remove:
            raise InvalidMetadata("no metadata change given: key=value to set, or a key to remove")
        return cls(dict(set), tuple(dict.fromkeys(remove)))

    def apply(self, metadata: Mapping[str, str]) -> dict[str, str]:
        out = {k: v for k, v in metadata.items() if k not in self.remove}
        out.update(self.set)
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class Overrides:
    """Runtime changes relative to the configured metadata."""

    set: Mapping[str, str] = field(default_factory=dict)
    removed: tuple[str, ...] = ()

    @classmethod
    def between(cls, configured: Mapping[str, str], now: Mapping[str, str]) -> Overrides:
        """What turns ``configured`` into ``now``."""
        return cls(
            {k: v for k, v in sorted(now.items()) if configured.get(k) != v},
            tuple(sorted(k for k in configured if k not in now)),
        )

    def effective(self, configured: Mapping[str, str]) -> dict[str, str]:
        out = {k: v for k, v in configured.items() if k not in self.removed}
        out.update(self.set)
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, object]:
        return {"set": dict(self.set), "removed": list(self.removed)}

    @classmethod
    def from_json(cls, data: object) -> Overrides:
        """From ``to_json``'s output; ValueError when it is not that."""
        if not isinstance(data, dict):
            raise ValueError("metadata overrides: not an object")
        set_, removed = data.get("set", {}), data.get("removed", [])
        if not isinstance(set_, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in set_.items()
        ):
            raise ValueError("metadata overrides: 'set' is not a string map")
        if not isinstance(removed, list) or not all(isinstance(k, str) for k in removed):
            raise ValueError("metadata overrides: 'removed' is not a list of strings")
        return cls(dict(set_), tuple(removed))

    def __bool__(self) -> bool:
        return bool(self.set or self.removed)
