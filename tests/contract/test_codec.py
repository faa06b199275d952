"""Keys, values and endpoint lists (pure)."""

from __future__ import annotations

import pytest

from fleetpy.model.types import TargetState, UnitState
from fleetpy.registry import codec
from fleetpy.registry.endpoints import Endpoint, parse_endpoints, unreachable_message
from fleetpy.registry.kv import prefix_end
from tests.contract.helpers import machine, scheduled, state, unit


def test_keys() -> None:
    assert codec.unit_key("a.service") == "units/a.service"
    assert codec.schedule_prefix("m1") == "schedule/m1/"
    assert codec.schedule_key("m1", "a.service") == "schedule/m1/a.service"
    assert codec.machine_key("m1") == "machines/m1"
    assert codec.state_key("m1", "a.service") == "states/m1/a.service"
    assert codec.waiting_key("a.service") == "waiting/a.service"
    assert codec.normalize_prefix("/fleet") == "/fleet/"
    for bad in ("", "a/b"):
        with pytest.raises(ValueError):
            codec.unit_key(bad)
        with pytest.raises(ValueError):
            codec.schedule_prefix(bad)


def test_values_round_trip() -> None:
    record = codec.decode_unit(
        "units/a.service", codec.encode_unit(unit("a.service"), TargetState.LOADED), 7
    )
    assert (record.unit, record.desired, record.revision) == (unit("a.service"), "loaded", 7)
    entry = scheduled("a.service", "m1")
    assert codec.decode_scheduled("schedule/m1/a.service", codec.encode_scheduled(entry)) == entry
    m = machine("m1", "10.0.0.9", role="web")
    assert codec.decode_machine("machines/m1", codec.encode_machine(m)) == m
    s = state("a.service", "m1")
    assert codec.decode_state("states/m1/a.service", codec.encode_state(s)) == s
    assert codec.decode_waiting("waiting/x.service", codec.encode_waiting("why")) == (
        "x.service", "why")
    assert codec.refused_key("m1", "x.service") == "refused/m1/x.service"
    assert codec.decode_refusal("refused/m1/x.service", codec.encode_refusal("why")) == (
        "m1", "x.service", "why")
    assert codec.decode_leader(codec.encode_leader("m1")) == "m1"


def test_state_carries_fleets_record_and_reads_older_reports() -> None:
    s = UnitState("a.service", "m1", "loaded", "active", "running", "h" * 40, "launched",
                  "stop: systemd stop a.service: Operation refused")
    assert codec.decode_state("states/m1/a.service", codec.encode_state(s)) == s
    old = b'{"active":"active","hash":"h","load":"loaded","sub":"running"}'  # older fleetd
    decoded = codec.decode_state("states/m1/a.service", old)
    assert (decoded.active_state, decoded.fleet, decoded.error) == ("active", "", "")
    with pytest.raises(codec.CodecError):
        codec.decode_state("states/m1/a.service", old[:-1] + b',"fleet":3}')


def test_values_are_canonical_json() -> None:
    # The leader value is compared byte for byte in engine transactions.
    assert codec.encode_leader("m1") == b'{"machine_id":"m1"}'
    assert codec.encode_waiting("x") == b'{"reason":"x"}'


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("units/a.service", b"not json"),
        ("units/a.service", b"[]"),
        ("units/a.service", b'{"hash":"h","contents":"c"}'),
        ("units/a.service", b'{"hash":"h","contents":"c","desired":"running"}'),
        ("units/a.service", b'{"hash":1,"contents":"c","desired":"loaded"}'),
        ("schedule/m1", b'{"hash":"h","contents":"c","target":"loaded"}'),
    ],
)
def test_bad_values_raise_codec_error(key: str, value: bytes) -> None:
    with pytest.raises(codec.CodecError):
        if key.startswith("units/"):
            codec.decode_unit(key, value)
        else:
            codec.decode_scheduled(key, value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("refused/m1", b'{"reason":"r"}'), ("refused/m1/a/b", b'{"reason":"r"}'),
     ("refused/m1/a", b'{"reason":1}'), ("refused/m1/a", b"{}")],
)
def test_bad_refusals_raise_codec_error(key: str, value: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode_refusal(key, value)


def test_bad_machine_metadata() -> None:
    with pytest.raises(codec.CodecError):
        codec.decode_machine("machines/m", b'{"id":"m","public_ip":"x","metadata":{"a":1}}')


def test_prefix_end() -> None:
    assert prefix_end(b"/fleetpy/") == b"/fleetpy0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


def test_parse_endpoints() -> None:
    assert parse_endpoints("http://172.17.8.1:4001, http://172.17.8.1:4002/") == [
        Endpoint("http://172.17.8.1:4001", "172.17.8.1:4001", False),
        Endpoint("http://172.17.8.1:4002", "172.17.8.1:4002", False),
    ]
    assert parse_endpoints(["https://etcd.example:2379", "10.0.0.1", "http://[::1]:4001"]) == [
        Endpoint("https://etcd.example:2379", "etcd.example:2379", True),
        Endpoint("http://10.0.0.1:2379", "10.0.0.1:2379", False),
        Endpoint("http://[::1]:4001", "[::1]:4001", False),
    ]
    assert parse_endpoints("unix:///run/etcd.sock") == [
        Endpoint("unix:///run/etcd.sock", "unix:/run/etcd.sock", False)
    ]
    for bad in ("", " , ", "ftp://x:1", "http://x:notaport", "http://:2379"):
        with pytest.raises(ValueError):
            parse_endpoints(bad)


def test_unreachable_message() -> None:
    assert unreachable_message([("http://a:1", "connection refused")]) == (
        "cannot reach etcd (tried http://a:1): connection refused"
    )
    assert unreachable_message([("http://a:1", "x"), ("http://b:2", "x")]) == (
        "cannot reach etcd (tried http://a:1, http://b:2): x"
    )
    assert unreachable_message([("http://a:1", "x"), ("http://b:2", "y")]) == (
        "cannot reach etcd (tried http://a:1, http://b:2): http://a:1: x; http://b:2: y"
    )
