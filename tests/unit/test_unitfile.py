"""Unit files: systemd's syntax, errors with line numbers, hash, make_unit_file."""

from __future__ import annotations

import hashlib

import pytest

from fleetpy.model.names import InvalidUnitName
from fleetpy.model.unitfile import (
    MAX_UNIT_SIZE,
    InvalidUnitFile,
    ParsedUnit,
    description,
    make_unit_file,
    parse_unit,
    short_hash,
    unit_hash,
)

HELLO = """\
[Unit]
Description=Hello World

[Service]
ExecStart=/bin/bash -c "while true; do echo Hello; sleep 1; done"
"""


def opts(parsed: ParsedUnit) -> list[tuple[str, str, str, int]]:
    return [(o.section, o.key, o.value, o.line) for o in parsed.options]


PARSES = [
    (
        "hello",
        HELLO,
        [
            ("Unit", "Description", "Hello World", 2),
            ("Service", "ExecStart", '/bin/bash -c "while true; do echo Hello; sleep 1; done"', 5),
        ],
    ),
    (
        "comments and blanks",
        "# top\n; also\n\n[Unit]\n  # indented\nA=1\n",
        [
            ("Unit", "A", "1", 6),
        ],
    ),
    ("whitespace stripped", "[Unit]\n  Key  =  v a l  \t\n", [("Unit", "Key", "v a l", 2)]),
    ("value with =", "[Service]\nEnvironment=A=b\n", [("Service", "Environment", "A=b", 2)]),
    (
        "continuation",
        "[Service]\nExecStart=/bin/a \\\n  --b\n",
        [
            ("Service", "ExecStart", "/bin/a    --b", 2),
        ],
    ),
    ("comment inside continuation skipped", "[S]\nA=1 \\\n# note\n2\n", [("S", "A", "1  2", 2)]),
    (
        "escaped backslash is not a continuation",
        "[S]\nA=x\\\\\nB=y\n",
        [
            ("S", "A", "x\\\\", 2),
            ("S", "B", "y", 3),
        ],
    ),
    ("continuation at end of file", "[S]\nA=x \\", [("S", "A", "x", 2)]),
    ("crlf line ends", "[S]\r\nA=1\r\nB=2\r\n", [("S", "A", "1", 2), ("S", "B", "2", 3)]),
    ("cr line ends", "[S]\rA=1\r", [("S", "A", "1", 2)]),
    ("bom ignored", "\ufeff[S]\nA=1\n", [("S", "A", "1", 2)]),
    (
        "repeated keys keep order",
        "[S]\nA=1\nA=2\nA=\nA=3\n",
        [
            ("S", "A", "1", 2),
            ("S", "A", "2", 3),
            ("S", "A", "", 4),
            ("S", "A", "3", 5),
        ],
    ),
    (
        "sections repeat",
        "[A]\nk=1\n[B]\nk=2\n[A]\nk=3\n",
        [
            ("A", "k", "1", 2),
            ("B", "k", "2", 4),
            ("A", "k", "3", 6),
        ],
    ),
    ("x-fleet section", "[X-Fleet]\nConflicts=a*\n", [("X-Fleet", "Conflicts", "a*", 2)]),
    ("comments only", "# nothing\n", []),
]


@pytest.mark.parametrize(("text", "want"), [p[1:] for p in PARSES], ids=[p[0] for p in PARSES])
def test_parse(text: str, want: list[tuple[str, str, str, int]]) -> None:
    assert opts(parse_unit("x.service", text)) == want


def test_values_reset_and_last() -> None:
    parsed = parse_unit("x.service", "[S]\nA=1\nA=2\nA=\nA=3\nA=4\nB=\n")
    assert parsed.values("S", "A") == ("3", "4")
    assert parsed.last("S", "A") == "4"
    assert parsed.values("S", "B") == ()
    assert parsed.last("S", "B") is None
    assert parsed.sections == ("S",)


ERRORS = [
    ("outside a section", "A=1\n[S]\n", 1, 'line 1: text outside a section: "A=1"'),
    ("missing =", "[S]\nA=1\nnonsense\n", 3, 'line 3: missing "=" in "nonsense"'),
    ("empty key", "[S]\n = 1\n", 2, 'line 2: missing key name before "="'),
    ("unterminated header", "[S]\nA=1\n[Unit\n", 3, 'line 3: invalid section header "[Unit"'),
    ("text after header", "[Unit] x\n", 1, "line 1: invalid section header"),
    ("empty header", "[]\n", 1, 'line 1: invalid section header "[]"'),
    ("nested brackets", "[a[b]\n", 1, "line 1: invalid section header"),
    ("continued error reports first line", "[S]\nA=1\nfoo \\\nbar\n", 3, 'missing "="'),
    ("nul byte", "[S]\nA=1\nB=\x00\n", 3, "line 3: contains a NUL byte"),
    ("lone surrogate", "[S]\nA=\udcff\n", 2, "line 2: invalid UTF-8"),
    ("bad utf-8 bytes", b"[S]\n\nA=\xff\xfe\n", 3, "line 3: invalid UTF-8"),
    ("empty", "", None, "empty unit file"),
    ("blank", " \n\t\n", None, "empty unit file"),
    ("empty bytes", b"", None, "empty unit file"),
    ("too big", "[S]\n" + "A=" + "x" * MAX_UNIT_SIZE + "\n", None, f"more than {MAX_UNIT_SIZE}"),
    ("too big bytes", b"[S]\nA=" + b"x" * MAX_UNIT_SIZE, None, f"more than {MAX_UNIT_SIZE}"),
]


@pytest.mark.parametrize(
    ("text", "line", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_parse_errors(text: str | bytes, line: int | None, fragment: str) -> None:
    with pytest.raises(InvalidUnitFile) as err:
        parse_unit("hello.service", text)
    assert err.value.line == line
    assert fragment in str(err.value)
    assert str(err.value).startswith('invalid unit file "hello.service": ')


def test_size_limit_is_inclusive() -> None:
    head = "[S]\nA="
    text = head + "x" * (MAX_UNIT_SIZE - len(head))
    assert len(text.encode()) == MAX_UNIT_SIZE
    parse_unit("x.service", text)


def test_bytes_and_text_parse_the_same() -> None:
    assert parse_unit("x.service", HELLO.encode()) == parse_unit("x.service", HELLO)


HASHES = [
    ("hello", HELLO),
    ("unicode", "[Unit]\nDescription=héllo ✓\n"),
    ("empty", ""),
]


@pytest.mark.parametrize("text", [h[1] for h in HASHES], ids=[h[0] for h in HASHES])
def test_unit_hash_is_sha1_of_utf8(text: str) -> None:
    digest = unit_hash(text)
    assert digest == hashlib.sha1(text.encode("utf-8")).hexdigest()
    assert len(digest) == 40
    assert short_hash(digest) == digest[:7]


DESCRIPTIONS = [
    ("set", "[Unit]\nDescription=Hello World\n", "Hello World"),
    ("last wins", "[Unit]\nDescription=a\nDescription=b\n", "b"),
    ("reset", "[Unit]\nDescription=a\nDescription=\n", ""),
    ("absent", "[Service]\nDescription=not here\n", ""),
]


@pytest.mark.parametrize(
    ("text", "want"), [d[1:] for d in DESCRIPTIONS], ids=[d[0] for d in DESCRIPTIONS]
)
def test_description(text: str, want: str) -> None:
    assert description(parse_unit("x.service", text)) == want


def test_make_unit_file() -> None:
    unit = make_unit_file("hello.service", HELLO)
    assert (unit.name, unit.contents, unit.hash) == ("hello.service", HELLO, unit_hash(HELLO))
    assert make_unit_file("hello.service", HELLO.encode()) == unit


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("../x.service", HELLO, InvalidUnitName),
        ("hello", HELLO, InvalidUnitName),
        ("hello.service", "junk\n", InvalidUnitFile),
        ("hello.service", "", InvalidUnitFile),
    ],
    ids=["slash", "no suffix", "bad contents", "empty contents"],
)
def test_make_unit_file_rejects(name: str, text: str, error: type[ValueError]) -> None:
    with pytest.raises(error):
        make_unit_file(name, text)
