"""fleetd settings a lab gives its hosts: checked with fleetd's own parser (pure)."""

from __future__ import annotations

import pytest

from fleetpy.lab.errors import LabError
from fleetpy.lab.fleetopts import canonical_metadata, fleet_env, host_metadata, metadata_for


def test_metadata_is_canonical() -> None:
    assert canonical_metadata("region=us-east, disk=ssd") == "disk=ssd,region=us-east"
    assert host_metadata(["core-01=region=us-east,disk=ssd", "core-02=region=us-west"]) == {
        "core-01": "disk=ssd,region=us-east",
        "core-02": "region=us-west",
    }


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["core-01"], "expected HOST=key=value"),
        (["core-01=region"], "is not key=value"),
        (["=region=x"], "expected HOST=key=value"),
        (["core-01=region=us east"], "no blanks"),
    ],
)
def test_bad_metadata(specs: list[str], message: str) -> None:
    with pytest.raises(LabError, match=message):
        host_metadata(specs)


def test_metadata_for_unknown_host() -> None:
    with pytest.raises(LabError, match=r"unknown host.*core-09: this lab has core-01, core-02"):
        metadata_for(["core-01", "core-02"], {"core-09": "a=b"})


def test_fleet_env() -> None:
    assert fleet_env(["FLEET_AGENT_TTL=5"]) == {"FLEET_AGENT_TTL": "5"}
    assert fleet_env({"FLEET_ENGINE_RECONCILE_INTERVAL": "1s"}) == {
        "FLEET_ENGINE_RECONCILE_INTERVAL": "1s"
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["FLEET_AGENT_TTL"], "expected FLEET_NAME=value"),
        (["PATH=/bin"], "bad fleetd variable 'PATH'"),
        (["FLEET_AGENT_TTL=0"], "agent_ttl"),
        (["FLEET_NO_SUCH=1"], "unknown setting 'no_such'"),
        (["FLEET_METADATA=a b"], "no blanks"),
    ],
)
def test_bad_fleet_env(items: list[str], message: str) -> None:
    with pytest.raises(LabError, match=message):
        fleet_env(items)
