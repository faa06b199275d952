"""Machine metadata: checked changes, runtime overrides of the configured metadata (pure)."""

from __future__ import annotations

import pytest

from fleetpy.model.metadata import (
    InvalidMetadata,
    MetadataChange,
    Overrides,
    parse_assignments,
)


def test_parse_assignments() -> None:
    assert parse_assignments(["region=us-east", "disk=ssd", "az=a"]) == {
        "region": "us-east", "disk": "ssd", "az": "a"}
    assert parse_assignments(["hostname=core-01", "v.1_x=1.2"]) == {
        "hostname": "core-01", "v.1_x": "1.2"}


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("region", "expected key=value"),
        ("=x", "invalid metadata key ''"),
        ("-x=y", "invalid metadata key '-x'"),
        ("a b=c", "invalid metadata key 'a b'"),
        ("a=", "invalid metadata value '' for a"),
        ("a=b c", "invalid metadata value 'b c'"),
        ("a=b,c", "invalid metadata value 'b,c'"),
        ("a=b=c", "invalid metadata value 'b=c'"),
        ('a="b"', "invalid metadata value"),
    ],
)
def test_bad_assignments(arg: str, message: str) -> None:
    with pytest.raises(InvalidMetadata, match=message):
        parse_assignments([arg])


def test_change_applies_sets_and_removals() -> None:
    change = MetadataChange.make({"disk": "ssd", "role": "db"}, ["region", "gone", "region"])
    assert change.remove == ("region", "gone")
    assert change.apply({"region": "us-east", "disk": "hdd", "az": "a"}) == {
        "az": "a", "disk": "ssd", "role": "db"}


@pytest.mark.parametrize(
    ("set_", "remove", "message"),
    [
        ({}, [], "no metadata change given"),
        ({"a": "1"}, ["a"], "both set and removed: a"),
        ({"a b": "1"}, [], "invalid metadata key"),
        ({}, ["a b"], "invalid metadata key"),
        ({"a": "x y"}, [], "invalid metadata value"),
    ],
)
def test_bad_changes(set_: dict[str, str], remove: list[str], message: str) -> None:
    with pytest.raises(InvalidMetadata, match=message):
        MetadataChange.make(set_, remove)


CONFIGURED = {"region": "us-east", "disk": "hdd"}


@pytest.mark.parametrize(
    ("now", "overrides"),
    [
        (CONFIGURED, Overrides()),
        ({"region": "us-east", "disk": "ssd"}, Overrides({"disk": "ssd"})),
        ({"region": "us-east"}, Overrides({}, ("disk",))),
        ({"role": "db"}, Overrides({"role": "db"}, ("disk", "region"))),
        ({}, Overrides({}, ("disk", "region"))),
    ],
)
def test_overrides_round_trip(now: dict[str, str], overrides: Overrides) -> None:
    assert Overrides.between(CONFIGURED, now) == overrides
    assert overrides.effective(CONFIGURED) == dict(sorted(now.items()))
    assert Overrides.from_json(overrides.to_json()) == overrides


def test_overrides_follow_a_changed_config_for_other_keys() -> None:
    overrides = Overrides.between(CONFIGURED, {"region": "us-east", "disk": "ssd"})
    assert overrides.effective({"region": "eu", "disk": "hdd", "az": "b"}) == {
        "az": "b", "disk": "ssd", "region": "eu"}


@pytest.mark.parametrize("data", [[], {"set": []}, {"set": {"a": 1}}, {"removed": "a"}])
def test_overrides_from_bad_json(data: object) -> None:
    with pytest.raises(ValueError, match="metadata overrides"):
        Overrides.from_json(data)
