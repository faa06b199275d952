"""A machine record's dashboard URL (codec, pure) and the checks before one fleetd asks
another for a unit's journal."""

from __future__ import annotations

import pytest

from fleetpy.dashboard.remote import RemoteError, _answer, dashboard_url, journal_target, parse_url
from fleetpy.model.names import InvalidUnitName
from fleetpy.model.types import Machine
from fleetpy.registry import codec


def test_machine_records_carry_the_dashboard_url_and_old_records_stay_readable() -> None:
    key = codec.machine_key("m1")
    with_url = Machine("m1", "10.0.0.1", {"a": "b"}, dashboard="http://10.0.0.1:8080")
    assert codec.decode_machine(key, codec.encode_machine(with_url)) == with_url
    without = Machine("m1", "10.0.0.1", {"a": "b"})
    assert b"dashboard" not in codec.encode_machine(without)  # what older fleetd write
    old = b'{"id":"m1","metadata":{"a":"b"},"public_ip":"10.0.0.1"}'
    assert codec.decode_machine(key, old) == without
    with pytest.raises(codec.CodecError, match="dashboard must be a string"):
        codec.decode_machine(key, b'{"id":"m1","metadata":{},"public_ip":"","dashboard":1}')


@pytest.mark.parametrize(("address", "secure", "url"), [
    (":8080", False, "http://10.0.0.5:8080"),
    ("0.0.0.0:8080", True, "https://10.0.0.5:8080"),
    ("[::]:8080", False, "http://10.0.0.5:8080"),
    ("10.1.1.1:9000", False, "http://10.1.1.1:9000"),
    ("[fd00::1]:8080", False, "http://[fd00::1]:8080"),
    ("dash.example:8080", True, "https://dash.example:8080"),
    ("127.0.0.1:8080", False, ""),  # other machines cannot reach it
    ("localhost:8080", False, ""),
    ("[::1]:8080", False, ""),
    ("127.0.0.1:0", False, ""),
    ("", False, ""),
])
def test_the_url_a_fleetd_publishes_for_its_dashboard(address: str, secure: bool,
                                                      url: str) -> None:
    assert dashboard_url(address, "10.0.0.5", secure) == url


def test_only_plain_dashboard_urls_are_followed() -> None:
    assert parse_url("http://10.0.0.5:8080") == ("http", "10.0.0.5", 8080)
    assert parse_url("https://[fd00::1]:8080/") == ("https", "fd00::1", 8080)
    for bad in ("ftp://10.0.0.5:21", "http://10.0.0.5", "http://10.0.0.5:8080/x",
                "http://10.0.0.5:8080?a=1", "http://u@10.0.0.5:8080", "http://:8080",
                "http://10.0.0.5:99999", "10.0.0.5:8080", ""):
        with pytest.raises(RemoteError, match="invalid dashboard URL"):
            parse_url(bad)


def test_unit_names_are_validated_then_quoted_in_the_request() -> None:
    assert journal_target("web@1.service") == "/api/journal/web%401.service?local=1"
    assert journal_target("a\\x2db.service") == "/api/journal/a%5Cx2db.service?local=1"
    for bad in ("../x.service", "a b.service", "x.service?machine=m", "-x", "x"):
        with pytest.raises(InvalidUnitName):
            journal_target(bad)


def test_answers_of_the_other_machine_are_checked() -> None:
    ok = (b'HTTP/1.1 200 OK\r\nContent-Length: 53\r\n\r\n'
          b'{"machine":"m2","lines":"l","message":"","here":true}')
    assert _answer("u", ok)["lines"] == "l"
    with pytest.raises(RemoteError, match=r"answered 404: unit x\.service not found"):
        _answer("u", b'HTTP/1.1 404 Not Found\r\n\r\n'
                     b'{"error":{"code":404,"message":"unit x.service not found"}}')
    with pytest.raises(RemoteError, match="did not answer HTTP"):
        _answer("u", b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(RemoteError, match="without a JSON object"):
        _answer("u", b"HTTP/1.1 200 OK\r\n\r\n<html>")
    with pytest.raises(RemoteError, match="without machine, lines and message"):
        _answer("u", b'HTTP/1.1 200 OK\r\n\r\n{"machine":"m2"}')
