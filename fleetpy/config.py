"""fleetd configuration: defaults < /etc/fleet/fleet.conf < FLEET_* environment < flags.

Key names are fleet's (etcd_servers, etcd_key_prefix, public_ip, metadata,
agent_ttl, engine_reconcile_interval, etcd_request_timeout, etcd_cafile,
etcd_certfile, etcd_keyfile) plus fleetpy's: etcd_username/etcd_password, the API
addresses and TLS files (api_socket, api_tcp, api_certfile, api_keyfile,
api_cafile), token_limit (fleet's: the HTTP API's page size), metrics_address and
dashboard_address. Parsing is pure:
it takes text and mappings and returns a Config or raises ConfigError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from fleetpy.registry.base import DEFAULT_PREFIX

DEFAULT_CONFIG_FILE = "/etc/fleet/fleet.conf"
DEFAULT_API_SOCKET = "unix:///var/run/fleet.sock"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the value."""


@dataclass(frozen=True, slots=True)
class Config:
    etcd_servers: tuple[str, ...] = ("http://127.0.0.1:2379", "http://127.0.0.1:4001")
    etcd_key_prefix: str = DEFAULT_PREFIX
    etcd_request_timeout: float = 1.0
    etcd_cafile: str = ""
    etcd_certfile: str = ""
    etcd_keyfile: str = ""
    etcd_username: str = ""
    etcd_password: str = ""
    public_ip: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    agent_ttl: int = 30
    engine_reconcile_interval: float = 2.0
    api_socket: str = DEFAULT_API_SOCKET
    api_tcp: str = ""
    api_certfile: str = ""  # TLS on api_tcp: certificate and key (PEM)
    api_keyfile: str = ""
    api_cafile: str = ""  # when set, API clients must show a certificate signed by it
    token_limit: int = 100  # entries in a page of the HTTP API (fleet's setting)
    metrics_address: str = ""  # host:port of /metrics and /health; "" = off
    dashboard_address: str = ""  # host:port of the read-only web dashboard; "" = off
    machine_id_file: str = "/etc/machine-id"
    units_dir: str = "/run/fleet/units"
    verbosity: int = 0


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def parse_duration(key: str, value: str) -> float:
    """'30', '30s', '500ms', '1m' -> seconds."""
    m = _DURATION.match(value)
    if not m:
        raise ConfigError(f"{key}: {value!r} is not a duration (e.g. 30s, 500ms, 2)")
    number, unit = float(m.group(1)), m.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def parse_metadata(value: str) -> dict[str, str]:
    """'region=us-west,az=a' -> {'region': 'us-west', 'az': 'a'}."""
    result: dict[str, str] = {}
    for item in (p.strip() for p in value.split(",")):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise ConfigError(f"metadata: {item!r} is not key=value")
        result[key.strip()] = val.strip()
    return result


def parse_list(value: str) -> tuple[str, ...]:
    """A JSON list (fleet.conf style) or a comma-separated string."""
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{text!r} is not a JSON list: {exc}") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{text!r} is not a list of strings")
        return tuple(i.strip() for i in items if i.strip())
    return tuple(p.strip() for p in text.split(",") if p.strip())


def parse_conf_file(text: str) -> dict[str, str]:
    """fleet.conf: `key=value` lines, `#` comments, values optionally quoted."""
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"fleet.conf line {number}: expected key=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        result[key.strip()] = value
    return result


_FIELDS = {f.name for f in fields(Config)}


def apply(config: Config, values: Mapping[str, str], source: str) -> Config:
    """Apply raw string settings (from a file, the environment or flags)."""
    changes: dict[str, object] = {}
    for key, value in values.items():
        if key not in _FIELDS:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        try:
            changes[key] = _convert(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return replace(config, **changes)  # type: ignore[arg-type]


def _convert(key: str, value: str) -> object:
    if key == "etcd_servers":
        servers = parse_list(value)
        if not servers:
            raise ConfigError("etcd_servers: at least one endpoint is needed")
        return servers
    if key == "metadata":
        return parse_metadata(value)
    if key in ("agent_ttl",):
        ttl = parse_duration(key, value)
        if ttl < 1:
            raise ConfigError(f"agent_ttl: {value!r} is below 1s")
        return round(ttl)
    if key in ("engine_reconcile_interval", "etcd_request_timeout"):
        seconds = parse_duration(key, value)
        if seconds <= 0:
            raise ConfigError(f"{key}: {value!r} must be positive")
        return seconds
    if key == "verbosity":
        if not value.strip().isdigit():
            raise ConfigError(f"verbosity: {value!r} is not a number")
        return int(value)
    if key == "token_limit":
        if not value.strip().isdigit() or not 1 <= int(value) <= 65535:
            raise ConfigError(f"token_limit: {value!r} is not a number from 1 to 65535")
        return int(value)
    if key == "etcd_key_prefix":
        prefix = value.strip()
        if not prefix.startswith("/"):
            raise ConfigError(f"etcd_key_prefix: {value!r} must start with /")
        return prefix if prefix.endswith("/") else prefix + "/"
    if key == "dashboard_address" and value.strip():
        _host, sep, port = value.strip().rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"dashboard_address: {value!r} is not HOST:PORT (e.g. :8080)")
    return value.strip()


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """FLEET_ETCD_SERVERS=... -> {'etcd_servers': ...} (unknown FLEET_* are errors)."""
    return {
        key[len("FLEET_"):].lower(): value
        for key, value in environ.items()
        if key.startswith("FLEET_") and value != ""
    }


def load(
    file_text: str | None,
    environ: Mapping[str, str],
    flags: Mapping[str, str],
    file_name: str = DEFAULT_CONFIG_FILE,
) -> Config:
    """Layer the sources: defaults < file < environment < flags."""
    config = Config()
    if file_text is not None:
        config = apply(config, parse_conf_file(file_text), file_name)
    config = apply(config, from_environment(environ), "environment")
    return apply(config, flags, "flags")
