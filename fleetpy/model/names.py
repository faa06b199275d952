"""Unit names, validated exactly as systemd 252 does (``unit_name_is_valid``).

A name is ``PREFIX.TYPE`` (plain), ``PREFIX@.TYPE`` (template) or
``PREFIX@INSTANCE.TYPE`` (instance):

- at most 255 characters (systemd: ``strlen(n) >= UNIT_NAME_MAX`` with 256);
- TYPE, after the last ``.``, is one of systemd's unit types;
- everything before that dot is made of ``A-Z a-z 0-9 : - _ . \\ @``;
- the first ``@`` splits prefix and instance; the prefix is never empty.
  Like systemd, later ``@`` belong to the instance (``a@b@c.service`` is an
  instance of ``a@.service`` whose instance is ``b@c``).

A ``/`` is never valid, so a name can never escape the directory it is
written to. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

UNIT_NAME_MAX = 255
UNIT_TYPES = frozenset(
    {
        "service",
        "socket",
        "device",
        "mount",
        "automount",
        "swap",
        "target",
        "path",
        "timer",
        "slice",
        "scope",
    }
)
VALID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@")


class InvalidUnitName(ValueError):
    """The name is not a valid systemd unit name; the message says why."""


@dataclass(frozen=True, slots=True)
class UnitName:
    """A parsed unit name: ``foo@bar.service`` -> prefix foo, instance bar, suffix service."""

    full: str
    prefix: str
    instance: str | None
    suffix: str

    @property
    def is_template(self) -> bool:
        return self.instance == ""

    @property
    def is_instance(self) -> bool:
        return bool(self.instance)

    @property
    def stem(self) -> str:
        """The name without its type suffix (``%N``): ``foo@bar``."""
        return self.full[: -len(self.suffix) - 1]

    @property
    def template(self) -> str | None:
        """``foo@.service`` for a template or an instance of it, else None."""
        if self.instance is None:
            return None
        return f"{self.prefix}@.{self.suffix}"


def quote(text: str, limit: int = 80) -> str:
    """``"text"`` for messages; non-printable characters escaped, long text cut."""
    if len(text) > limit:
        return quote(text[: limit - 3], limit)[:-1] + '..."'
    if text.isprintable() and '"' not in text:
        return f'"{text}"'
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def _problem(name: str) -> str | None:
    """The reason ``name`` is invalid, or None when it is valid."""
    if not name:
        return "empty name"
    if len(name.encode("utf-8", "surrogatepass")) > UNIT_NAME_MAX:
        return f"longer than {UNIT_NAME_MAX} bytes"
    if "/" in name:
        return 'contains "/"'
    dot = name.rfind(".")
    if dot < 0:
        return "missing a type suffix such as .service"
    if dot == 0:
        return "empty name before the type suffix"
    suffix = name[dot + 1 :]
    if suffix not in UNIT_TYPES:
        valid = ", ".join(sorted(UNIT_TYPES))
        return f"unknown unit type {quote('.' + suffix, 40)} (valid: {valid})"
    bad = sorted({c for c in name[:dot] if c not in VALID_CHARS})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"invalid character(s) {shown} (allowed: letters, digits and :-_.\\@)"
    if name[0] == "@":
        return 'empty prefix before "@"'
    return None


def is_valid(name: str) -> bool:
    return _problem(name) is None


def validate_unit_name(name: str) -> None:
    """Raise InvalidUnitName naming the problem if ``name`` is not a valid unit name."""
    problem = _problem(name)
    if problem is not None:
        raise InvalidUnitName(f"invalid unit name {quote(name)}: {problem}")


def parse(name: str) -> UnitName:
    """Split a valid unit name; raises InvalidUnitName for an invalid one."""
    validate_unit_name(name)
    dot = name.rfind(".")
    stem, suffix = name[:dot], name[dot + 1 :]
    at = stem.find("@")
    if at < 0:
        return UnitName(full=name, prefix=stem, instance=None, suffix=suffix)
    return UnitName(full=name, prefix=stem[:at], instance=stem[at + 1 :], suffix=suffix)


def is_template(name: str) -> bool:
    """True for a valid template name such as ``foo@.service``."""
    return is_valid(name) and parse(name).is_template


def is_instance(name: str) -> bool:
    """True for a valid instance name such as ``foo@1.service``."""
    return is_valid(name) and parse(name).is_instance


def template_of(name: str) -> str | None:
    """``foo@5555.service`` -> ``foo@.service``; None for plain names and templates."""
    if not is_valid(name):
        return None
    parsed = parse(name)
    return parsed.template if parsed.is_instance else None


def instance_name(template: str, instance: str) -> str:
    """``instance_name("foo@.service", "1")`` -> ``foo@1.service`` (validated)."""
    parsed = parse(template)
    if not parsed.is_template:
        raise InvalidUnitName(f"invalid unit name {quote(template)}: not a template")
    name = f"{parsed.prefix}@{instance}.{parsed.suffix}"
    validate_unit_name(name)
    return name


def expand_specifiers(value: str, name: str) -> str:
    """Expand ``%n %N %p %i %%`` in ``value`` for the unit ``name``.

    ``%n`` full name, ``%N`` name without the type suffix, ``%p`` the prefix
    before ``@`` (the stem for a plain unit), ``%i`` the instance (empty for a
    plain unit or a template), ``%%`` a literal ``%``. Other specifiers are
    left as they are. ``name`` need not be valid (best effort), as in fleet.
    """
    if "%" not in value:
        return value
    dot = name.rfind(".")
    stem = name[:dot] if dot > 0 else name
    at = stem.find("@")
    prefix, instance = (stem, "") if at < 0 else (stem[:at], stem[at + 1 :])
    table = {"n": name, "N": stem, "p": prefix, "i": instance, "%": "%"}
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "%" and i + 1 < len(value) and value[i + 1] in table:
            out.append(table[value[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)
