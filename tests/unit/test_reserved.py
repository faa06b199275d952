"""Names fleet refuses at submit (fleetpy.model.reserved), each with the rule it breaks."""

from __future__ import annotations

import re

import pytest

from fleetpy.api.validation import checked_unit_file
from fleetpy.model.names import InvalidUnitName, is_valid, quote
from fleetpy.model.reserved import (
    SYSTEMD_SPECIAL,
    check_managed,
    escape,
    managed_problem,
    unit_problem,
)
from fleetpy.model.unitfile import parse_unit

SCOPE = "a .scope unit cannot be loaded from a unit file (systemd creates scopes at run time)"
SLICE = "a .slice unit is part of systemd's own resource tree; fleet does not manage slices"
DEVICE = "a .device unit comes from udev, not from a unit file"
FLEET = "fleet's own unit: fleet never manages itself (a stop would stop fleetd)"
SYSTEMD = 'names starting with "systemd-" are systemd\'s own units; fleet never manages them'
SPECIAL = ("a special unit systemd itself defines (systemd.special(7)); "
           "fleet never manages systemd's own units")
HIDDEN = ('starts with ".": systemd skips hidden files in its unit directories, '
          "so the unit could never be loaded")

CGROUP = ('starts with "_" and is 255 bytes long: systemd names its control group "_" + '
          "the name, over the 255-byte limit, so it could never start")

REFUSED = [
    ("fleet.service", FLEET),
    ("fleet.socket", FLEET),
    ("systemd-journald.service", SYSTEMD),
    ("systemd-journald.socket", SYSTEMD),
    ("systemd-fsck@dev-sda1.service", SYSTEMD),
    ("systemd-x.timer", SYSTEMD),
    ("init.scope", SCOPE),
    ("x.scope", SCOPE),
    ("-.slice", SLICE),
    ("system.slice", SLICE),
    ("user.slice", SLICE),
    ("my.slice", SLICE),
    ("dev-sda.device", DEVICE),
    ("-.mount", SPECIAL),
    ("dbus.service", SPECIAL),
    ("dbus.socket", SPECIAL),
    ("default.target", SPECIAL),
    ("multi-user.target", SPECIAL),
    ("sysinit.target", SPECIAL),
    ("basic.target", SPECIAL),
    ("shutdown.target", SPECIAL),
    ("network-online.target", SPECIAL),
    ("runlevel3.target", SPECIAL),
    ("user@.service", SPECIAL),
    ("user@1000.service", SPECIAL),
    ("blockdev@dev-sda.target", SPECIAL),
    ("_" + "u" * 246 + ".service", CGROUP),
    ("_" + "u" * 247 + ".socket", CGROUP),
    ("_" + "u" * 248 + ".mount", CGROUP),
    (".hidden.service", HIDDEN),
    (".x@1.service", HIDDEN),
    ("..service", HIDDEN),
]


@pytest.mark.parametrize(("name", "reason"), REFUSED, ids=[n[:40] for n, _ in REFUSED])
def test_refused_names_say_which_rule(name: str, reason: str) -> None:
    assert is_valid(name)  # valid to systemd, refused by fleet
    assert managed_problem(name) == reason
    with pytest.raises(InvalidUnitName) as err:
        check_managed(name)
    assert str(err.value) == f"invalid unit name {quote(name)}: {reason}"


@pytest.mark.parametrize(("name", "reason"), REFUSED, ids=[n[:40] for n, _ in REFUSED])
def test_submit_checks_refuse_them(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid unit name {quote(name)}: {reason}")):
        checked_unit_file(name, "[Unit]\nDescription=x\n")


ALLOWED = [
    "hello.service",
    "-.service",
    "a.mount",
    "srv-data.mount",
    "x.swap",
    "x.automount",
    "web.target",
    "fleet-helper.service",
    "myfleet.service",
    "fleet@1.service",
    "systemd.service",  # "systemd-" is the prefix systemd keeps, not "systemd"
    "mysystemd-x.service",
    "dbus-broker-helper.service",
    "users@1.service",
    "user.service",
    "a" * 247 + ".service",
    "_" + "u" * 245 + ".service",  # 254 bytes: its control group's name fits
    "_" + "u" * 247 + ".target",  # no control group
    "a_" + "u" * 245 + ".service",
    "x.y.socket",
    "t.timer",
    "p.path",
    "nginx@5555.service",
]


@pytest.mark.parametrize("name", ALLOWED, ids=[n[:40] for n in ALLOWED])
def test_ordinary_names_are_allowed(name: str) -> None:
    assert managed_problem(name) is None
    check_managed(name)
    unit, _ = checked_unit_file(name, "[Unit]\nDescription=x\n")
    assert unit.name == name


def test_syntax_is_checked_before_the_rule() -> None:
    with pytest.raises(InvalidUnitName, match=r'^invalid unit name "\.service": empty name'):
        check_managed(".service")
    with pytest.raises(InvalidUnitName, match='contains "/"'):
        check_managed("systemd-a/b.service")


def test_special_list_holds_only_valid_names() -> None:
    assert all(is_valid(name) for name in SYSTEMD_SPECIAL)
    assert all(managed_problem(name) is not None for name in SYSTEMD_SPECIAL)


# names systemd derives from a unit's: boundaries measured on a lab host (systemd 252)
P = "p" * 250
LOADS = [
    ("socket triggers a 255-byte service", P[:247] + ".socket", "[Socket]\nListenStream=/x\n"),
    ("socket names its service", P[:248] + ".socket",
     "[Socket]\nListenStream=/x\nService=s.service\n"),
    ("socket with Accept=yes", P[:248] + ".socket", "[Socket]\nListenStream=/x\nAccept=yes\n"),
    ("timer names its unit", P[:248] + ".timer", "[Timer]\nOnActiveSec=1h\nUnit=x.service\n"),
    ("path names its unit", P[:249] + ".path", "[Path]\nPathExists=/x\nUnit=x.service\n"),
    ("timer just fits", P[:246] + ".timer", "[Timer]\nOnActiveSec=1h\n"),
    ("slice of a 242-byte prefix", P[:242] + "@i.service", "[Service]\nExecStart=/bin/true\n"),
    ("long prefix with Slice=", P[:243] + "@i.service",
     "[Service]\nExecStart=/bin/true\nSlice=x.slice\n"),
    ("a target has no slice", P[:243] + "@i.target", "[Unit]\n"),
    ("dashes in a short prefix", "a-b-c-d@i.service", "[Service]\nExecStart=/bin/true\n"),
]
FAILS = [
    ("socket triggers a 256-byte service", P[:248] + ".socket", "[Socket]\nListenStream=/x\n",
     'a .socket unit triggers "' + "p" * 37 + '..." by default, 256 bytes, '
     "over the 255-byte limit: name the unit to trigger with Service= in [Socket]"),
    ("timer", P[:248] + ".timer", "[Timer]\nOnActiveSec=1h\n",
     "a .timer unit triggers"),
    ("path", P[:249] + ".path", "[Path]\nPathExists=/x\nUnit=\n",
     "by default, 257 bytes, over the 255-byte limit: name the unit to trigger with "
     "Unit= in [Path]"),
    ("slice of a 243-byte prefix", P[:243] + "@i.service", "[Service]\nExecStart=/bin/true\n",
     "an instance goes into the slice system-PREFIX.slice, here 256 bytes "
     '(escaped: "-" and "\\" take 4 bytes each), over the 255-byte limit: '
     "shorten the prefix or set Slice= in [Service]"),
    ("dashes escaped", "a-" * 78 + "z@i.service", "[Service]\nExecStart=/bin/true\n",
     "here 404 bytes"),
    ("socket instance", "b\\" * 60 + "z@i.socket", "[Socket]\nListenStream=/x\n",
     "set Slice= in [Socket]"),
]


@pytest.mark.parametrize(("name", "text"), [c[1:] for c in LOADS], ids=[c[0] for c in LOADS])
def test_files_systemd_loads_under_their_names(name: str, text: str) -> None:
    assert unit_problem(name, parse_unit(name, text)) is None
    checked_unit_file(name, text)


@pytest.mark.parametrize(("name", "text", "reason"), [c[1:] for c in FAILS],
                         ids=[c[0] for c in FAILS])
def test_files_systemd_would_not_load_are_refused(name: str, text: str, reason: str) -> None:
    problem = unit_problem(name, parse_unit(name, text))
    assert problem is not None and reason in problem
    with pytest.raises(InvalidUnitName, match=r"^invalid unit name ") as err:
        checked_unit_file(name, text)
    assert str(err.value).endswith(problem)


@pytest.mark.parametrize(("text", "want"), [
    ("plain", "plain"), ("a-b", "a\\x2db"), ("a\\b", "a\\x5cb"), ("x:y_z.w", "x:y_z.w"),
    (".dot", "\\x2edot"), ("a/b", "a-b"), ("é", "\\xc3\\xa9"), ("a@b", "a\\x40b"),
])
def test_escape_as_systemd_does(text: str, want: str) -> None:
    assert escape(text) == want
