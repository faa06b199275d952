"""fleet's unit options <-> unit file text, and fleet's page tokens (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetpy.httpapi.options import InvalidOptions, UnitOption, options_to_text, text_to_options
from fleetpy.httpapi.pages import BadToken, decode_token, encode_token, page_of
from fleetpy.model.unitfile import make_unit_file, parse_unit
from tests.fixtures.fleet_http import fleet_hash

_word = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                min_size=1, max_size=12)
_value_line = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"),
                                             blacklist_characters="\\"),
                      max_size=30).map(lambda s: s.strip(" \t"))
_value = st.lists(_value_line, min_size=1, max_size=3).map(
    lambda lines: " \\\n".join(lines) if all(lines[1:]) else lines[0]).filter(
    lambda v: v == v.strip(" \t\r\n"))
_option = st.builds(UnitOption, section=st.sampled_from(["Unit", "Service", "X-Fleet", "Install"]),
                    name=_word, value=_value)


@given(st.lists(_option, min_size=1, max_size=12))
def test_options_round_trip_through_text(opts: list[UnitOption]) -> None:
    text = options_to_text(opts)
    back = text_to_options(text)
    # sections are grouped (in order of first appearance), as fleet serialises them
    order = list(dict.fromkeys(o.section for o in opts))
    assert back == sorted(opts, key=lambda o: order.index(o.section))
    assert options_to_text(back) == text
    parse_unit("x.service", text)  # fleetpy's own parser takes it


def test_fleets_documented_example_hash() -> None:
    opts = [UnitOption("Service", "ExecStart", "/bin/sleep 100")]
    unit = make_unit_file("x.service", options_to_text(opts))
    assert unit.hash == "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"
    assert unit.hash == fleet_hash([o.to_json() for o in opts])


def test_text_to_options_reads_like_go_systemd() -> None:
    text = ("# comment\n[Unit]\nDescription = spaced  \n; other comment\n\n"
            "[Service]\nExecStart=/bin/sh -c \\\n    'echo hi'\nEnvironment=\n")
    assert text_to_options(text) == [
        UnitOption("Unit", "Description", "spaced"),
        UnitOption("Service", "ExecStart", "/bin/sh -c \\\n    'echo hi'"),
        UnitOption("Service", "Environment", ""),
    ]


@pytest.mark.parametrize("opt, reason", [
    (UnitOption("", "A", "b"), "section"),
    (UnitOption("Se]rvice", "A", "b"), "section"),
    (UnitOption("Service", "", "b"), "option name"),
    (UnitOption("Service", "A=B", "b"), "option name"),
    (UnitOption("Service", "A", " b"), "whitespace"),
    (UnitOption("Service", "A", "b\nC=d"), "newline"),
    (UnitOption("Service", "A", "b \\\\"), "backslash"),
])
def test_options_that_cannot_be_a_unit_file(opt: UnitOption, reason: str) -> None:
    with pytest.raises(InvalidOptions, match=reason):
        options_to_text([opt])


def test_page_tokens_are_fleets() -> None:
    # two little-endian uint16 (limit, page), base64url with padding
    assert encode_token(100, 2) == "ZAACAA=="
    assert decode_token("ZAACAA==", 100) == 2
    for bad, why in [("!!", "invalid"), ("ZAA=", "invalid"), ("CgACAA==", "limit must be 100"),
                     ("ZAAAAA==", "greater than zero")]:
        with pytest.raises(BadToken, match=why):
            decode_token(bad, 100)


def test_pages_as_fleet_cuts_them() -> None:
    items = list(range(250))
    assert page_of(items, 1, 100) == (items[:100], encode_token(100, 2))
    assert page_of(items, 3, 100) == (items[200:], None)
    assert page_of(items, 4, 100) == ([], None)
    # fleet gives a token when a page ends exactly at the last entry
    assert page_of(items[:200], 2, 100) == (items[100:200], encode_token(100, 3))
