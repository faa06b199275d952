"""Unit options as fleet's API carries them <-> unit file text. Pure.

fleet keeps a unit as a list of options and hashes (SHA1) their serialisation
(go-systemd's ``unit.Serialize``): one ``[Section]`` header per section in the
order sections first appear, its options in order as ``Name=Value`` lines,
sections separated by an empty line, every line ending in ``\\n``. fleetpy keeps
the text and hashes it, so a unit created over the HTTP API is stored as that
serialisation: its hash is the one fleet gives the same options.

Text -> options reads like go-systemd's ``unit.Deserialize``: comments and
blank lines skipped, whitespace around names and values stripped, and a line
continuation (a value ending in ``\\``) kept verbatim in the value with its
newline, so ``options_to_text(text_to_options(t)) == t`` for serialised text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")
_WS = " \t"


class InvalidOptions(ValueError):
    """Options that cannot be written as a unit file line by line."""


@dataclass(frozen=True, slots=True)
class UnitOption:
    section: str
    name: str
    value: str

    def to_json(self) -> dict[str, str]:
        return {"section": self.section, "name": self.name, "value": self.value}


def _check(i: int, opt: UnitOption) -> None:
    where = f"option {i + 1} ({opt.section!r}, {opt.name!r})"
    if not opt.section or opt.section != opt.section.strip(_WS) or any(
            c in opt.section for c in "[]\r\n"):
        raise InvalidOptions(f"{where}: invalid section name {opt.section!r}")
    if not opt.name or opt.name != opt.name.strip(_WS) or any(
            c in opt.name for c in "=\r\n[#;"):
        raise InvalidOptions(f"{where}: invalid option name {opt.name!r}")
    if opt.value != opt.value.strip(_WS + "\r\n"):
        raise InvalidOptions(f"{where}: value has leading or trailing whitespace")
    for line in _LINE_END.split(opt.value)[:-1]:
        if not line.endswith("\\"):
            raise InvalidOptions(f"{where}: a newline in a value must follow a backslash "
                                 "(a line continuation)")
    if opt.value.endswith("\\"):
        raise InvalidOptions(f"{where}: value ends in a backslash (it would continue "
                             "onto the next line)")
    if "\r" in opt.value:
        raise InvalidOptions(f"{where}: carriage return in value")


def options_to_text(options: Sequence[UnitOption]) -> str:
    """The unit file fleet would hash for ``options``. Raises InvalidOptions."""
    if not options:
        raise InvalidOptions("no options")
    sections: dict[str, list[UnitOption]] = {}
    for i, opt in enumerate(options):
        _check(i, opt)
        sections.setdefault(opt.section, []).append(opt)
    blocks = ["".join([f"[{section}]\n"] + [f"{o.name}={o.value}\n" for o in opts])
              for section, opts in sections.items()]
    return "\n".join(blocks)


def text_to_options(text: str) -> list[UnitOption]:
    """The options of a unit file (already validated by fleetpy's parser)."""
    out: list[UnitOption] = []
    section = ""
    lines = _LINE_END.split(text.lstrip("\ufeff"))
    i = 0
    while i < len(lines):
        line = lines[i].strip(_WS)
        i += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        name, _, value = line.partition("=")
        value = value.lstrip(_WS)
        while value.endswith("\\") and i < len(lines):
            value += "\n" + lines[i]
            i += 1
        out.append(UnitOption(section, name.strip(_WS), value.rstrip(_WS)))
    return out


def options_from_json(items: Iterable[object]) -> list[UnitOption]:
    """UnitOption entities from decoded JSON. Raises InvalidOptions."""
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidOptions(f"option {i + 1} is not an object")
        fields = []
        for key in ("section", "name", "value"):
            value = item.get(key, "")
            if not isinstance(value, str):
                raise InvalidOptions(f"option {i + 1}: {key} is not a string")
            fields.append(value)
        out.append(UnitOption(*fields))
    return out
