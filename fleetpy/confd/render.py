"""Which keys a resource sees, the min_keys rule, and Jinja2 rendering (pure: no I/O).

What a template sees (keys without the resource's prefix, values as text):

- ``kv``: a dict key -> value of every key the resource watches, sorted by key
- ``get(key)``: the value (an error if missing); ``getv(key, default)`` with a default
- ``exists(key)``: true when the key is there
- ``gets(pattern)``: ``[{key, value}]`` of the keys matching a glob (``*`` and ``?``
  stop at ``/``, as in confd), sorted by key; ``getvs(pattern)``: their values, sorted
- ``ls(dir)``: the names directly under ``dir``, sorted
- filters ``base`` and ``dirname`` (of a key path), ``hostport`` (the value if it is
  ``host:port``, else a render error: a value cannot smuggle text into a config)

Undefined names are errors (StrictUndefined): a typo keeps the old file.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.sandbox

from fleetpy.confd.resource import Resource


class RenderError(Exception):
    """The template, the values or min_keys refused a render: the old file stays."""


def under(key: str, watched: str) -> bool:
    """``key`` is ``watched`` itself or below it (``/a`` covers ``/a/b``, not ``/ab``)."""
    return watched == "/" or key == watched or key.startswith(watched + "/")


def select(items: Mapping[str, bytes], resource: Resource) -> dict[str, str]:
    """The resource's keys (prefix removed) -> their values as text, sorted by key."""
    found: dict[str, str] = {}
    cut = 0 if resource.base == "/" else len(resource.base)
    for key in sorted(items):
        if not any(under(key, k) for k in resource.keys):
            continue
        try:
            found[key[cut:] or "/"] = items[key].decode()
        except UnicodeDecodeError:
            raise RenderError(f"{resource.name}: the value of {key} is not UTF-8 text") from None
    return found


def check_min_keys(values: Mapping[str, str], resource: Resource) -> None:
    """RenderError when fewer keys than ``min_keys`` are there (an election, a wipe)."""
    if len(values) < resource.min_keys:
        raise RenderError(
            f"{resource.name}: {len(values)} key(s) under {', '.join(resource.keys)}, "
            f"min_keys is {resource.min_keys}: keeping {resource.dest} as it is")


def _pattern(glob: str) -> re.Pattern[str]:
    out = []
    for char in glob:
        out.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: str


def helpers(values: Mapping[str, str]) -> dict[str, Callable[..., Any]]:
    missing = object()

    def get(key: str) -> str:
        if key not in values:
            raise RenderError(f"get: key {key} does not exist")
        return values[key]

    def getv(key: str, default: Any = missing) -> Any:
        if key in values:
            return values[key]
        if default is missing:
            raise RenderError(f"getv: key {key} does not exist (and no default given)")
        return default

    def gets(glob: str) -> list[KV]:
        match = _pattern(glob).match
        return [KV(k, v) for k, v in values.items() if match(k)]

    def getvs(glob: str) -> list[str]:
        return sorted(kv.value for kv in gets(glob))

    def ls(directory: str) -> list[str]:
        base = directory.rstrip("/") + "/"
        return sorted({k[len(base):].split("/")[0] for k in values if k.startswith(base)})

    return {"get": get, "getv": getv, "gets": gets, "getvs": getvs, "ls": ls,
            "exists": lambda key: key in values}


_HOSTPORT = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                       r":[0-9]{1,5}\Z")


def hostport(value: object) -> str:
    text = str(value)
    if not _HOSTPORT.match(text):
        raise RenderError(f"hostport: {text!r} is not host:port")
    return text


def render(source: str, values: Mapping[str, str], name: str = "template") -> str:
    """Render the Jinja2 ``source`` with ``values``; RenderError on any problem."""
    env = jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["base"] = posixpath.basename
    env.filters["dirname"] = posixpath.dirname
    env.filters["hostport"] = hostport
    try:
        template = env.from_string(source)
        return template.render(kv=dict(values), **helpers(values))
    except RenderError as e:
        raise RenderError(f"{name}: {e}") from None
    except jinja2.TemplateSyntaxError as e:
        raise RenderError(f"{name}: line {e.lineno}: {e.message}") from None
    except jinja2.TemplateError as e:
        raise RenderError(f"{name}: {e}") from None
