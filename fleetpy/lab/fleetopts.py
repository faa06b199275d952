"""fleetd settings a lab gives its hosts: machine metadata per host, extra FLEET_* variables.

Both end up in each host's fleet.service drop-in (``Environment=FLEET_METADATA=...``,
``Environment=FLEET_AGENT_TTL=5``), so they are checked here with fleetd's own
configuration parser: a lab never boots a fleetd that would refuse its settings.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from fleetpy.config import ConfigError, load
from fleetpy.lab.errors import LabError

ENV_NAME = re.compile(r"^FLEET_[A-Z0-9_]+$")
SAFE_VALUE = re.compile(r"^[^\s\"'\\]*$")  # fits a drop-in's Environment= unquoted


def canonical_metadata(value: str) -> str:
    """``region=us-east, disk=ssd`` -> ``disk=ssd,region=us-east``; LabError if fleetd
    would refuse it."""
    try:
        parsed = load(None, {"FLEET_METADATA": value}, {}).metadata
    except ConfigError as exc:
        raise LabError(f"bad metadata {value!r}: {exc}") from None
    text = ",".join(f"{k}={parsed[k]}" for k in sorted(parsed))
    if not SAFE_VALUE.match(text):
        raise LabError(f"bad metadata {value!r}: no blanks, quotes or backslashes")
    return text


def metadata_for(hosts: Sequence[str], metadata: Mapping[str, str]) -> dict[str, str]:
    """Canonical metadata by host; LabError for a host the lab will not have."""
    unknown = sorted(set(metadata) - set(hosts))
    if unknown:
        raise LabError(f"metadata for unknown host(s) {', '.join(unknown)}: "
                       f"this lab has {', '.join(hosts)}")
    return {h: canonical_metadata(v) for h, v in metadata.items()}


def host_metadata(specs: Iterable[str]) -> dict[str, str]:
    """``core-01=region=us-east,disk=ssd`` (repeatable) -> {host: canonical metadata}."""
    out: dict[str, str] = {}
    for spec in specs:
        host, sep, value = spec.partition("=")
        if not sep or not host or not value:
            raise LabError(f"bad --metadata {spec!r}: expected HOST=key=value[,key=value...]")
        out[host] = canonical_metadata(value)
    return out


def fleet_env(items: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """Extra fleetd environment (``FLEET_AGENT_TTL=5``), checked by fleetd's parser."""
    pairs: dict[str, str] = {}
    if isinstance(items, Mapping):
        pairs = dict(items)
    else:
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise LabError(f"bad --fleet-env {item!r}: expected FLEET_NAME=value")
            pairs[key] = value
    for key, value in pairs.items():
        if not ENV_NAME.match(key):
            raise LabError(f"bad fleetd variable {key!r}: expected FLEET_NAME (upper case)")
        if not SAFE_VALUE.match(value):
            raise LabError(f"bad value for {key}: no blanks, quotes or backslashes")
    try:
        load(None, pairs, {})
    except ConfigError as exc:
        raise LabError(f"fleetd would refuse {', '.join(sorted(pairs))}: {exc}") from None
    return pairs
