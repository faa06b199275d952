"""Unit names: systemd 252's unit_name_is_valid, parse, templates, specifiers."""

from __future__ import annotations

import pytest

from fleetpy.model.names import (
    InvalidUnitName,
    expand_specifiers,
    instance_name,
    is_instance,
    is_template,
    is_valid,
    parse,
    template_of,
    validate_unit_name,
)

GOOD = [
    ("plain", "hello.service"),
    ("template", "foo@.service"),
    ("instance", "foo@5555.service"),
    ("dots in prefix", "a.b.c.service"),
    ("all allowed chars", "aZ09:-_.\\x20@i.socket"),
    ("second @ belongs to the instance", "a@b@c.service"),
    ("dot dot inside, no slash", "x..y.timer"),
    ("escaped path", "run-user-1000.mount"),
    ("255 bytes", "a" * 247 + ".service"),
    *[
        (f"type {t}", f"u.{t}")
        for t in (
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
        )
    ],
]


@pytest.mark.parametrize("name", [n for _, n in GOOD], ids=[i for i, _ in GOOD])
def test_valid_names(name: str) -> None:
    validate_unit_name(name)
    assert is_valid(name)


BAD = [
    ("empty", "", "empty name"),
    ("slash", "../x.service", 'contains "/"'),
    ("slash inside", "a/b.service", 'contains "/"'),
    ("dotdot alone", "..", 'unknown unit type "."'),
    ("no suffix", "hello", "missing a type suffix"),
    ("unknown suffix", "hello.foo", 'unknown unit type ".foo"'),
    ("suffix only", ".service", "empty name before the type suffix"),
    ("trailing dot", "hello.", 'unknown unit type "."'),
    ("space", "hello world.service", "invalid character(s) ' '"),
    ("unicode", "héllo.service", "invalid character(s) 'é'"),
    ("nul", "a\x00.service", "invalid character(s)"),
    ("star", "a*.service", "invalid character(s) '*'"),
    ("empty prefix", "@foo.service", 'empty prefix before "@"'),
    ("template empty prefix", "@.service", 'empty prefix before "@"'),
    ("256 bytes", "a" * 248 + ".service", "longer than 255 bytes"),
    ("upper-case type", "a.Service", 'unknown unit type ".Service"'),
]


@pytest.mark.parametrize(
    ("name", "fragment"), [(n, f) for _, n, f in BAD], ids=[i for i, _, _ in BAD]
)
def test_invalid_names(name: str, fragment: str) -> None:
    with pytest.raises(InvalidUnitName) as err:
        validate_unit_name(name)
    assert fragment in str(err.value)
    assert str(err.value).startswith("invalid unit name ")
    assert not is_valid(name)
    assert isinstance(err.value, ValueError)


def test_message_names_the_problem() -> None:
    with pytest.raises(
        InvalidUnitName, match=r'^invalid unit name "\.\./x\.service": contains "/"$'
    ):
        validate_unit_name("../x.service")


PARSED = [
    ("plain", "hello.service", "hello", None, "service", "hello", None, False, False),
    ("template", "foo@.service", "foo", "", "service", "foo@", "foo@.service", True, False),
    (
        "instance",
        "foo@5555.service",
        "foo",
        "5555",
        "service",
        "foo@5555",
        "foo@.service",
        False,
        True,
    ),
    ("nested @", "a@b@c.socket", "a", "b@c", "socket", "a@b@c", "a@.socket", False, True),
    ("dotted", "a.b@c.d.timer", "a.b", "c.d", "timer", "a.b@c.d", "a.b@.timer", False, True),
]


@pytest.mark.parametrize(
    ("name", "prefix", "instance", "suffix", "stem", "template", "tmpl", "inst"),
    [p[1:] for p in PARSED],
    ids=[p[0] for p in PARSED],
)
def test_parse(
    name: str,
    prefix: str,
    instance: str | None,
    suffix: str,
    stem: str,
    template: str | None,
    tmpl: bool,
    inst: bool,
) -> None:
    parsed = parse(name)
    assert (parsed.prefix, parsed.instance, parsed.suffix, parsed.stem) == (
        prefix,
        instance,
        suffix,
        stem,
    )
    assert parsed.template == template
    assert (is_template(name), is_instance(name)) == (tmpl, inst)
    assert (parsed.is_template, parsed.is_instance) == (tmpl, inst)


TEMPLATE_OF = [
    ("instance", "foo@5555.service", "foo@.service"),
    ("template itself", "foo@.service", None),
    ("plain", "foo.service", None),
    ("invalid", "foo@5555", None),
]


@pytest.mark.parametrize(
    ("name", "want"), [t[1:] for t in TEMPLATE_OF], ids=[t[0] for t in TEMPLATE_OF]
)
def test_template_of(name: str, want: str | None) -> None:
    assert template_of(name) == want


def test_parse_rejects_invalid() -> None:
    with pytest.raises(InvalidUnitName):
        parse("nope")


def test_instance_name() -> None:
    assert instance_name("foo@.service", "1") == "foo@1.service"
    with pytest.raises(InvalidUnitName, match="not a template"):
        instance_name("foo.service", "1")
    with pytest.raises(InvalidUnitName, match="invalid character"):
        instance_name("foo@.service", "a b")


SPECIFIERS = [
    ("full name", "%n", "foo@bar.service", "foo@bar.service"),
    ("name without suffix", "%N", "foo@bar.service", "foo@bar"),
    ("prefix", "%p", "foo@bar.service", "foo"),
    ("instance", "%i", "foo@bar.service", "bar"),
    ("percent", "100%%", "foo@bar.service", "100%"),
    ("percent then i", "%%i", "foo@bar.service", "%i"),
    ("plain prefix is the stem", "%p.socket", "foo.service", "foo.socket"),
    ("plain instance empty", "x%iy", "foo.service", "xy"),
    ("template instance empty", "web@%i.service", "web@.service", "web@.service"),
    ("unknown kept", "%H-%u", "a@b.service", "%H-%u"),
    ("trailing percent kept", "a%", "a@b.service", "a%"),
    ("several", "%p-%i-%n", "db@3.service", "db-3-db@3.service"),
]


@pytest.mark.parametrize(
    ("value", "name", "want"), [s[1:] for s in SPECIFIERS], ids=[s[0] for s in SPECIFIERS]
)
def test_expand_specifiers(value: str, name: str, want: str) -> None:
    assert expand_specifiers(value, name) == want
