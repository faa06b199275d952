"""Template resources in confd's TOML form (pure: parsing and checking, no I/O).

A resource file (``<confdir>/conf.d/NAME.toml``) holds one ``[template]`` table::

    [template]
    src = "nginx-lb.conf.tmpl"          # under <confdir>/templates/ (or absolute)
    dest = "/run/nginx-lb/nginx.conf"   # absolute
    keys = ["/services/web"]            # each: the key itself and every key under KEY/
    prefix = ""                         # put before every key (after --prefix)
    check_cmd = "/usr/sbin/nginx -t -c {{.src}}"   # run on the staged file
    reload_cmd = "/bin/systemctl reload nginx-lb.service"
    mode = "0644"                       # octal string (or an integer)
    owner = "root"                      # user name or uid; "user:group" too
    min_keys = 1                        # fewer keys: keep the old file
    wait = "200ms:1s"                   # debounce min:max (consul-template's wait)

confd's ``uid``/``gid`` are accepted as well as ``owner``.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from typing import Any

SRC_PLACEHOLDER = re.compile(r"\{\{\s*\.src\s*\}\}")
KNOWN = frozenset({
    "src", "dest", "keys", "prefix", "check_cmd", "reload_cmd", "mode", "owner", "uid",
    "gid", "min_keys", "wait",
})


class ConfdError(Exception):
    """A bad resource, template or command line: the message names the problem."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Debounce: render ``min`` s after the last change, ``max`` s after the first at the
    latest (consul-template's ``wait``). 0:0 renders at once."""

    min: float = 0.0
    max: float = 0.0


@dataclass(frozen=True, slots=True)
class Resource:
    name: str  # the TOML file's name, for logs
    src: str
    dest: str
    keys: tuple[str, ...]  # full etcd keys (prefixes applied), no trailing "/"
    base: str = "/"  # --prefix + prefix: what templates do not see of a key
    prefix: str = ""
    check_cmd: str = ""
    reload_cmd: str = ""
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    owner: str = ""  # as written (resolved to uid/gid by the caller)
    min_keys: int = 0
    wait: Wait | None = None  # None: the command line's --wait


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def parse_duration(text: str, what: str) -> float:
    """'200ms', '1.5s', '2' (seconds), '1m' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfdError(f"{what}: {text!r} is not a duration (like 200ms, 1s, 1m)")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]


def parse_wait(value: object, what: str = "wait") -> Wait:
    """'MIN:MAX' or 'MIN' (max = 4 x min, as consul-template) or {min=..., max=...}."""
    if isinstance(value, dict):
        unknown = set(value) - {"min", "max"}
        if unknown or "min" not in value:
            raise ConfdError(f"{what}: a table needs min (and max), not {sorted(value)}")
        low = _duration_value(value["min"], f"{what}.min")
        high = _duration_value(value["max"], f"{what}.max") if "max" in value else 4 * low
    elif isinstance(value, str):
        parts = value.split(":")
        if len(parts) > 2:
            raise ConfdError(f"{what}: {value!r} is not MIN:MAX")
        low = parse_duration(parts[0], what)
        high = parse_duration(parts[1], what) if len(parts) == 2 else 4 * low
    else:
        raise ConfdError(f"{what}: give a string like \"200ms:1s\", not {value!r}")
    if high < low:
        raise ConfdError(f"{what}: max ({high:g}s) is below min ({low:g}s)")
    return Wait(low, high)


def _duration_value(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfdError(f"{what}: {value!r} is not a duration")
    if isinstance(value, str):
        return parse_duration(value, what)
    if value < 0:
        raise ConfdError(f"{what}: {value!r} is negative")
    return float(value)


def join_key(prefix: str, key: str) -> str:
    """confd's key path: prefix + key, one '/' between, none at the end (but '/')."""
    joined = "/" + "/".join(p for p in (prefix + "/" + key).split("/") if p)
    return joined


def parse_resource(text: str, name: str, global_prefix: str = "") -> Resource:
    """A resource from TOML text; ConfdError naming ``name`` and the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfdError(f"{name}: not valid TOML: {e}") from None
    table = data.get("template")
    if not isinstance(table, dict):
        raise ConfdError(f"{name}: no [template] table")
    extra = set(data) - {"template"}
    if extra:
        raise ConfdError(f"{name}: unknown table(s) {sorted(extra)}: only [template]")
    unknown = set(table) - KNOWN
    if unknown:
        raise ConfdError(f"{name}: unknown setting(s) {sorted(unknown)} "
                         f"(known: {', '.join(sorted(KNOWN))})")
    src = _string(table, "src", name, required=True)
    dest = _string(table, "dest", name, required=True)
    if not dest.startswith("/"):
        raise ConfdError(f"{name}: dest {dest!r} must be an absolute path")
    if dest.endswith("/"):
        raise ConfdError(f"{name}: dest {dest!r} names a directory, not a file")
    keys = table.get("keys")
    if (not isinstance(keys, list) or not keys
            or not all(isinstance(k, str) and k.strip() for k in keys)):
        raise ConfdError(f"{name}: keys must be a non-empty list of key names")
    prefix = _string(table, "prefix", name)
    base = join_key(global_prefix, prefix)
    full = tuple(join_key(base, k) for k in keys)
    check_cmd = _string(table, "check_cmd", name)
    if check_cmd and not SRC_PLACEHOLDER.search(check_cmd):
        raise ConfdError(f"{name}: check_cmd must name the staged file as {{{{.src}}}} "
                         f"(checking the live file would check the old config): {check_cmd!r}")
    mode = _mode(table.get("mode"), name)
    min_keys = table.get("min_keys", 0)
    if isinstance(min_keys, bool) or not isinstance(min_keys, int) or min_keys < 0:
        raise ConfdError(f"{name}: min_keys must be a whole number >= 0, not {min_keys!r}")
    uid, gid = _id(table, "uid", name), _id(table, "gid", name)
    owner = _string(table, "owner", name)
    if owner and (uid is not None or gid is not None):
        raise ConfdError(f"{name}: give owner or uid/gid, not both")
    wait = parse_wait(table["wait"], f"{name}: wait") if "wait" in table else None
    return Resource(
        name=name, src=src, dest=dest, keys=full, base=base, prefix=prefix,
        check_cmd=check_cmd, reload_cmd=_string(table, "reload_cmd", name), mode=mode,
        uid=uid, gid=gid, owner=owner, min_keys=min_keys, wait=wait,
    )


def _string(table: dict[str, Any], field: str, name: str, required: bool = False) -> str:
    value = table.get(field, "")
    if not isinstance(value, str):
        raise ConfdError(f"{name}: {field} must be a string, not {value!r}")
    if required and not value.strip():
        raise ConfdError(f"{name}: {field} is missing")
    return value


def _mode(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            mode = int(value, 8)
        except ValueError:
            msg = f"{name}: mode {value!r} is not an octal number like \"0644\""
            raise ConfdError(msg) from None
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        raise ConfdError(f"{name}: mode must be an octal string like \"0644\", not {value!r}")
    if not 0 <= mode <= 0o7777:
        raise ConfdError(f"{name}: mode {value!r} is out of range")
    return mode


def _id(table: dict[str, Any], field: str, name: str) -> int | None:
    value = table.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfdError(f"{name}: {field} must be a number >= 0, not {value!r}")
    return value


def check_command(resource: Resource, staged: str) -> str:
    """check_cmd with ``{{.src}}`` replaced by the staged file's path (shell-quoted)."""
    return SRC_PLACEHOLDER.sub(lambda _m: shlex.quote(staged), resource.check_cmd)
