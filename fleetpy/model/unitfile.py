"""systemd unit files: parse like systemd's ``config_parse``, hash like fleet.

Syntax (systemd.syntax(7)), as systemd 252 reads it:

- ``[Section]`` headers; ``Key=Value`` assignments, key and value stripped of
  surrounding whitespace; a key may repeat (values kept in order) and an
  empty value resets the list (``values()`` applies that rule).
- Lines whose first non-blank character is ``#`` or ``;`` are comments, also
  in the middle of a continuation (they are skipped, not joined).
- A line ending in an odd number of backslashes continues on the next line:
  the last backslash becomes a space.
- Line ends are ``\\n``, ``\\r\\n`` or ``\\r``; a leading UTF-8 BOM is ignored.

Where systemd only warns and ignores a line, this parser refuses the file, so
that a mistake is reported at submit time and not found later on a machine:
text outside a section, a line without ``=``, an empty key, a bad section
header. Also refused: invalid UTF-8, NUL bytes, an empty file and a file
larger than MAX_UNIT_SIZE. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from fleetpy.model.names import quote, validate_unit_name
from fleetpy.model.types import UnitFile

MAX_UNIT_SIZE = 64 * 1024
"""Largest accepted unit file, in bytes of UTF-8."""

WHITESPACE = " \t\n\r"
COMMENTS = "#;"
_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


class InvalidUnitFile(ValueError):
    """The contents are not an acceptable unit file; ``line`` is 1-based or None."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class Option:
    """One ``Key=Value`` assignment and the line it starts on."""

    section: str
    key: str
    value: str
    line: int


@dataclass(frozen=True, slots=True)
class ParsedUnit:
    """A parsed unit file: its assignments in file order."""

    name: str
    options: tuple[Option, ...]
    sections: tuple[str, ...]

    def section(self, section: str) -> tuple[Option, ...]:
        """The assignments of one section, in order (no reset applied)."""
        return tuple(o for o in self.options if o.section == section)

    def values(self, section: str, key: str) -> tuple[str, ...]:
        """The values of ``key`` in ``section``; an empty value resets the list."""
        out: list[str] = []
        for o in self.options:
            if o.section == section and o.key == key:
                if o.value:
                    out.append(o.value)
                else:
                    out.clear()
        return tuple(out)

    def last(self, section: str, key: str) -> str | None:
        """The value in effect for a single-valued key (the last one), or None."""
        values = self.values(section, key)
        return values[-1] if values else None


def unit_hash(text: str) -> str:
    """SHA1 hex digest of the UTF-8 contents (tables show the first 7 characters)."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def short_hash(digest: str) -> str:
    return digest[:7]


def _line_of(text: str, index: int) -> int:
    return len(_LINE_END.findall(text, 0, index)) + 1


def decode_contents(name: str, data: str | bytes) -> str:
    """Check size and encoding; return the text. Raises InvalidUnitFile."""
    where = f"invalid unit file {quote(name)}"
    if isinstance(data, bytes):
        raw = data
        if len(raw) > MAX_UNIT_SIZE:
            raise InvalidUnitFile(f"{where}: {len(raw)} bytes, more than {MAX_UNIT_SIZE}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise InvalidUnitFile(f"{where}: line {line}: invalid UTF-8", line) from None
    else:
        text = data
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            line = _line_of(text, exc.start)
            raise InvalidUnitFile(f"{where}: line {line}: invalid UTF-8", line) from None
        if len(raw) > MAX_UNIT_SIZE:
            raise InvalidUnitFile(f"{where}: {len(raw)} bytes, more than {MAX_UNIT_SIZE}")
    nul = text.find("\x00")
    if nul >= 0:
        line = _line_of(text, nul)
        raise InvalidUnitFile(f"{where}: line {line}: contains a NUL byte", line)
    if not text.strip(WHITESPACE + _BOM):
        raise InvalidUnitFile(f"{where}: empty unit file")
    return text


def parse_unit(name: str, text: str | bytes) -> ParsedUnit:
    """Parse a unit file like systemd; raises InvalidUnitFile naming the line and reason."""
    text = decode_contents(name, text)
    if text.startswith(_BOM):
        text = text[1:]
    where = f"invalid unit file {quote(name)}"

    def fail(line: int, reason: str) -> InvalidUnitFile:
        return InvalidUnitFile(f"{where}: line {line}: {reason}", line)

    options: list[Option] = []
    sections: list[str] = []
    section: str | None = None

    def take(start: int, logical: str) -> None:
        nonlocal section
        if logical.startswith("["):
            header = logical[1:-1] if logical.endswith("]") else ""
            if not header or "[" in header or "]" in header or header != header.strip(WHITESPACE):
                raise fail(start, f"invalid section header {quote(logical)}")
            section = header
            if header not in sections:
                sections.append(header)
            return
        if section is None:
            raise fail(start, f"text outside a section: {quote(logical)}")
        eq = logical.find("=")
        if eq < 0:
            raise fail(start, f'missing "=" in {quote(logical)}')
        key = logical[:eq].strip(WHITESPACE)
        if not key:
            raise fail(start, f'missing key name before "=" in {quote(logical)}')
        value = logical[eq + 1 :].strip(WHITESPACE)
        options.append(Option(section=section, key=key, value=value, line=start))

    pending: str | None = None  # a continued line, joined so far
    pending_line = 0
    for number, physical in enumerate(_LINE_END.split(text), start=1):
        stripped = physical.lstrip(WHITESPACE)
        if stripped[:1] and stripped[0] in COMMENTS:
            continue
        start = number if pending is None else pending_line
        joined = physical if pending is None else pending + physical
        if (len(physical) - len(physical.rstrip("\\"))) % 2 == 1:
            pending, pending_line = joined[:-1] + " ", start
            continue
        pending = None
        logical = joined.strip(WHITESPACE)
        if logical:
            take(start, logical)
    if pending is not None and pending.strip(WHITESPACE):
        take(pending_line, pending.strip(WHITESPACE))
    return ParsedUnit(name=name, options=tuple(options), sections=tuple(sections))


def description(parsed: ParsedUnit) -> str:
    """``[Unit] Description=`` in effect, or "" when there is none."""
    return parsed.last("Unit", "Description") or ""


def make_unit_file(name: str, text: str | bytes) -> UnitFile:
    """Validate the name and the contents; return the UnitFile with its hash.

    Raises InvalidUnitName or InvalidUnitFile (both ValueError).
    """
    validate_unit_name(name)
    contents = decode_contents(name, text)
    parse_unit(name, contents)
    return UnitFile(name=name, contents=contents, hash=unit_hash(contents))
