"""[X-Fleet]: options, deprecated names, specifiers, warnings, impossible combinations."""

from __future__ import annotations

import pytest

from fleetpy.model.unitfile import parse_unit
from fleetpy.model.xfleet import (
    InvalidXFleet,
    XFleet,
    check_xfleet,
    parse_xfleet,
    split_words,
    validate,
    xfleet_of,
)


def xf(body: str, name: str = "app@web1.service") -> tuple[XFleet, tuple[str, ...]]:
    return parse_xfleet(parse_unit(name, "[Service]\nExecStart=/bin/true\n[X-Fleet]\n" + body))


PARSES = [
    ("none", "", XFleet()),
    ("machine id", "MachineID=4f4a4289\n", XFleet(machine_id="4f4a4289")),
    ("machine id first wins", "MachineID=a\nMachineID=b\n", XFleet(machine_id="a")),
    (
        "machine of lines AND",
        "MachineOf=a.service\nMachineOf=b.service\n",
        XFleet(machine_of=("a.service", "b.service")),
    ),
    (
        "machine of words",
        "MachineOf=a.service b.service\n",
        XFleet(machine_of=("a.service", "b.service")),
    ),
    ("machine of dedup", "MachineOf=a.service a.service\n", XFleet(machine_of=("a.service",))),
    (
        "metadata",
        "MachineMetadata=region=us-east\n",
        XFleet(machine_metadata=(("region", ("us-east",)),)),
    ),
    (
        "metadata OR within key",
        "MachineMetadata=region=us-east\nMachineMetadata=region=us-west\n",
        XFleet(machine_metadata=(("region", ("us-east", "us-west")),)),
    ),
    (
        "metadata quoted multivalue",
        'MachineMetadata="region=us east" "disk=ssd"\n',
        XFleet(machine_metadata=(("disk", ("ssd",)), ("region", ("us east",)))),
    ),
    (
        "metadata value with =",
        "MachineMetadata=k=a=b\n",
        XFleet(machine_metadata=(("k", ("a=b",)),)),
    ),
    (
        "conflicts space separated",
        "Conflicts=web*.service db@*.service\n",
        XFleet(conflicts=("web*.service", "db@*.service")),
    ),
    ("conflicts lines", "Conflicts=a*\nConflicts=b?\n", XFleet(conflicts=("a*", "b?"))),
    ("global true", "Global=true\n", XFleet(is_global=True)),
    ("global yes", "Global=YES\n", XFleet(is_global=True)),
    ("global last wins", "Global=true\nGlobal=false\n", XFleet()),
    ("replaces", "Replaces=old.service\n", XFleet(replaces=("old.service",))),
    ("fenced", "StopWhenDisconnected=true\n", XFleet(stop_when_disconnected=True)),
    ("fenced on", "StopWhenDisconnected=On\n", XFleet(stop_when_disconnected=True)),
    ("fenced 1", "StopWhenDisconnected=1\n", XFleet(stop_when_disconnected=True)),
    ("fenced no", "StopWhenDisconnected=no\n", XFleet()),
    ("fenced last wins", "StopWhenDisconnected=t\nStopWhenDisconnected=f\n", XFleet()),
    ("fenced reset", "StopWhenDisconnected=yes\nStopWhenDisconnected=\n", XFleet()),
    (
        "fenced global",
        "Global=true\nStopWhenDisconnected=true\n",
        XFleet(is_global=True, stop_when_disconnected=True),
    ),
    ("empty value resets", "Conflicts=a*\nConflicts=\nConflicts=b*\n", XFleet(conflicts=("b*",))),
    ("deprecated machine id", "X-ConditionMachineID=abc\n", XFleet(machine_id="abc")),
    ("deprecated boot id", "X-ConditionMachineBootID=abc\n", XFleet(machine_id="abc")),
    (
        "deprecated machine of",
        "X-ConditionMachineOf=a.service\n",
        XFleet(machine_of=("a.service",)),
    ),
    (
        "deprecated metadata",
        "X-ConditionMachineMetadata=a=b\n",
        XFleet(machine_metadata=(("a", ("b",)),)),
    ),
    ("deprecated conflicts", "X-Conflicts=a*\n", XFleet(conflicts=("a*",))),
    ("both names merge", "X-Conflicts=a*\nConflicts=b*\n", XFleet(conflicts=("a*", "b*"))),
    ("specifier %p", "MachineOf=%p.socket\n", XFleet(machine_of=("app.socket",))),
    ("specifier %i", "Conflicts=*@%i.service\n", XFleet(conflicts=("*@web1.service",))),
    ("specifier %n", "Replaces=%n\n", XFleet(replaces=("app@web1.service",))),
    ("specifier %N", "MachineOf=%N.socket\n", XFleet(machine_of=("app@web1.socket",))),
    ("specifier %%", "MachineMetadata=pct=100%%\n", XFleet(machine_metadata=(("pct", ("100%",)),))),
    (
        "specifier in metadata",
        "MachineMetadata=role=%i\n",
        XFleet(machine_metadata=(("role", ("web1",)),)),
    ),
]


@pytest.mark.parametrize(("body", "want"), [p[1:] for p in PARSES], ids=[p[0] for p in PARSES])
def test_parse_xfleet(body: str, want: XFleet) -> None:
    assert xf(body)[0] == want


WARNINGS = [
    ("unknown key", "Foo=bar\n", 'line 4: unknown [X-Fleet] option "Foo" ignored'),
    ("deprecated", "X-Conflicts=a*\n", "line 4: X-Conflicts is deprecated, use Conflicts"),
    ("deprecated boot id", "X-ConditionMachineBootID=a\n", "deprecated, use MachineID"),
    ("several machine ids", "MachineID=a b\n", "MachineID has 2 values, using the first"),
    ("global not boolean", "Global=maybe\n", "Global=maybe is not a boolean, taken as false"),
    (
        "fenced not boolean",
        "StopWhenDisconnected=always\n",
        "StopWhenDisconnected=always is not a boolean, taken as false",
    ),
]


@pytest.mark.parametrize(
    ("body", "fragment"), [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS]
)
def test_warnings(body: str, fragment: str) -> None:
    _, warnings = xf(body)
    assert len(warnings) == 1
    assert fragment in warnings[0]


def test_no_warnings_for_clean_section() -> None:
    assert xf("Conflicts=a*\nMachineMetadata=a=b\nGlobal=false\n")[1] == ()


BAD_VALUES = [
    (
        "metadata without =",
        "MachineMetadata=region\n",
        "MachineMetadata=region: expected key=value",
    ),
    ("metadata empty value", "MachineMetadata=region=\n", "expected key=value"),
    ("metadata empty key", "MachineMetadata==x\n", "expected key=value"),
    ("machine of not a unit", "MachineOf=foo\n", "MachineOf=foo: not a valid unit name"),
    ("replaces not a unit", "Replaces=a/b.service\n", "Replaces=a/b.service: not a valid unit"),
    ("conflicts bad char", "Conflicts=a/b*\n", "Conflicts=a/b*: invalid character(s) /"),
]


@pytest.mark.parametrize(
    ("body", "fragment"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES]
)
def test_bad_values(body: str, fragment: str) -> None:
    with pytest.raises(InvalidXFleet) as err:
        xf(body)
    assert fragment in str(err.value)
    assert str(err.value).startswith('invalid [X-Fleet] in "app@web1.service": ')


def test_template_does_not_check_expanded_names() -> None:
    spec, _ = xf("MachineOf=%i.socket\n", name="app@.service")
    assert spec.machine_of == (".socket",)


def test_template_does_not_check_expanded_metadata() -> None:
    check_xfleet(parse_unit("web@.service", "[X-Fleet]\nMachineMetadata=hostname=%i\n"))
    spec = xfleet_of("web@core-02.service", "[X-Fleet]\nMachineMetadata=hostname=%i\n",
                     template="web@.service")
    assert spec.machine_metadata == (("hostname", ("core-02",)),)
    with pytest.raises(InvalidXFleet, match="MachineMetadata=hostname=: expected key=value"):
        xfleet_of("web.service", "[X-Fleet]\nMachineMetadata=hostname=%i\n")


COMBINATIONS = [
    ("fine", XFleet(conflicts=("a*",), machine_of=("b.service",)), []),
    (
        "machine id + conflicts",
        XFleet(machine_id="m", conflicts=("a*",)),
        ["MachineID cannot be combined with Conflicts"],
    ),
    (
        "machine id + global",
        XFleet(machine_id="m", is_global=True),
        ["MachineID cannot be combined with Global=true"],
    ),
    (
        "machine id + replaces",
        XFleet(machine_id="m", replaces=("a.service",)),
        ["MachineID cannot be combined with Replaces"],
    ),
    (
        "machine id + machine of",
        XFleet(machine_id="m", machine_of=("a.service",)),
        ["MachineID cannot be combined with MachineOf"],
    ),
    (
        "machine id + metadata is fine",
        XFleet(machine_id="m", machine_metadata=(("a", ("b",)),)),
        [],
    ),
    (
        "global + machine of",
        XFleet(is_global=True, machine_of=("a.service",)),
        ["Global=true cannot be combined with MachineOf"],
    ),
    (
        "global + replaces",
        XFleet(is_global=True, replaces=("a.service",)),
        ["Global=true cannot be combined with Replaces"],
    ),
    (
        "global + conflicts",
        XFleet(is_global=True, conflicts=("a*",)),
        ["Global=true cannot be combined with Conflicts"],
    ),
    (
        "conflicts + replaces",
        XFleet(conflicts=("a*",), replaces=("b.service",)),
        ["Conflicts cannot be combined with Replaces"],
    ),
    (
        "machine of excluded by own conflicts",
        XFleet(machine_of=("db.service",), conflicts=("d*",)),
        ["MachineOf=db.service can never be met: its own Conflicts=d* excludes it"],
    ),
    (
        "machine of itself",
        XFleet(machine_of=("x.service",)),
        ["MachineOf=x.service names the unit itself"],
    ),
    (
        "several",
        XFleet(machine_id="m", is_global=True, machine_of=("a.service",)),
        [
            "MachineID cannot be combined with Global=true",
            "MachineID cannot be combined with MachineOf",
            "Global=true cannot be combined with MachineOf",
        ],
    ),
]


@pytest.mark.parametrize(
    ("spec", "want"), [c[1:] for c in COMBINATIONS], ids=[c[0] for c in COMBINATIONS]
)
def test_validate(spec: XFleet, want: list[str]) -> None:
    assert validate(spec, "x.service") == want


def test_check_xfleet_raises_with_every_problem() -> None:
    parsed = parse_unit("x.service", "[X-Fleet]\nMachineID=m\nGlobal=true\nConflicts=a*\n")
    with pytest.raises(InvalidXFleet) as err:
        check_xfleet(parsed)
    assert err.value.problems == (
        "MachineID cannot be combined with Conflicts",
        "MachineID cannot be combined with Global=true",
        "Global=true cannot be combined with Conflicts",
    )


def test_xfleet_of_instance_from_template_contents() -> None:
    contents = "[Service]\nExecStart=/bin/true\n[X-Fleet]\nConflicts=%p@*.service\n"
    spec = xfleet_of("web@2.service", contents, template="web@.service")
    assert spec.conflicts == ("web@*.service",)


METADATA = [
    ("no requirement", XFleet(), {}, True),
    ("match", XFleet(machine_metadata=(("r", ("east",)),)), {"r": "east"}, True),
    ("missing key", XFleet(machine_metadata=(("r", ("east",)),)), {}, False),
    ("other value", XFleet(machine_metadata=(("r", ("east",)),)), {"r": "west"}, False),
    ("OR within key", XFleet(machine_metadata=(("r", ("east", "west")),)), {"r": "west"}, True),
    (
        "AND across keys",
        XFleet(machine_metadata=(("d", ("ssd",)), ("r", ("east",)))),
        {"r": "east", "d": "hdd"},
        False,
    ),
    (
        "AND all present",
        XFleet(machine_metadata=(("d", ("ssd",)), ("r", ("east",)))),
        {"r": "east", "d": "ssd", "x": "y"},
        True,
    ),
]


@pytest.mark.parametrize(
    ("spec", "metadata", "want"), [m[1:] for m in METADATA], ids=[m[0] for m in METADATA]
)
def test_matches_metadata(spec: XFleet, metadata: dict[str, str], want: bool) -> None:
    assert spec.matches_metadata(metadata) is want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("a b", ["a", "b"]),
        ('"a b" c', ["a b", "c"]),
        ("  a\t b  ", ["a", "b"]),
        ('""', [""]),
        ('x"y z"', ["xy z"]),
    ],
    ids=["plain", "quoted", "tabs", "empty quoted", "quote inside word"],
)
def test_split_words(value: str, want: list[str]) -> None:
    assert split_words(value) == want
