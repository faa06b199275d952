"""fleet's v1 HTTP API on a lab of its own, driven with curl inside the hosts.

Lab ``flhttp`` (172.17.63.0/24): 2 hosts, fleetd under each host's systemd.
Every request is ``curl --unix-socket /var/run/fleet.sock http://fleet/fleet/v1/...``
inside a host, as fleet's users script it; requests and expected entities are
written from fleet's Documentation/api-v1.md (tests/fixtures/fleet_http.py
for fleet's unit hash). fleetctl inside the hosts speaks gRPC on the same
socket: a unit made over one API is read back over the other with one hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fleetpy.lab import Lab
from tests.fixtures.fleet_http import fleet_hash, serialize
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import UNIT_FILES, eventually, ok, table

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

SOCK = "/var/run/fleet.sock"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with own_lab("flhttp", "172.17.63.0/24", hosts=2, etcd_members=1) as the_lab:
        yield the_lab


def curl(lab: Lab, host: str, method: str, path: str,
         body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """(status, decoded JSON body or None) of one request over the host's fleet socket."""
    argv = ["curl", "-sS", "--unix-socket", SOCK, "-X", method, "-w", "\n%{http_code}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    done = ok(lab.exec(host, [*argv, f"http://fleet/fleet/v1/{path}"], timeout=30))
    payload, _, status = done.rpartition("\n")
    return int(status), (json.loads(payload) if payload.strip() else None)


def file_options(text: str) -> list[dict[str, str]]:
    """A simple unit file (no comments, no continuations) as fleet's UnitOptions."""
    opts, section = [], ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            name, _, value = line.partition("=")
            opts.append({"section": section, "name": name.strip(), "value": value.strip()})
    return opts


def fleetctl(lab: Lab, host: str, *args: str) -> str:
    return ok(lab.exec(host, ["fleetctl", *args], timeout=60))


def hashes(lab: Lab, host: str) -> dict[str, str]:
    rows = table(fleetctl(lab, host, "list-unit-files", "--full", "--no-legend"))
    return {row[0]: row[1] for row in rows}


def systemd_active(lab: Lab, host: str, unit: str) -> str:
    return lab.exec(host, ["systemctl", "is-active", unit]).stdout.strip()


def test_discovery_and_machines(lab: Lab) -> None:
    status, doc = curl(lab, "core-01", "GET", "discovery.json")
    assert status == 200 and doc["kind"] == "discovery#restDescription"
    assert set(doc["resources"]) == {"Machines", "Units", "UnitState"}
    status, page = curl(lab, "core-02", "GET", "machines")
    assert status == 200
    assert sorted((m["id"], m["primaryIP"]) for m in page["machines"]) == sorted(
        (h.machine_id, h.ip) for h in lab.hosts)


def test_walkthrough_over_http(lab: Lab) -> None:
    """The seed's walkthrough with hello.service: submit, start, list, stop, destroy."""
    opts = file_options((UNIT_FILES / "static" / "hello.service").read_text())
    hosts = {h.machine_id: h.name for h in lab.hosts}
    # submit
    assert curl(lab, "core-01", "PUT", "units/hello.service",
                {"desiredState": "inactive", "options": opts}) == (201, None)
    status, unit = curl(lab, "core-02", "GET", "units/hello.service")
    assert status == 200 and unit["options"] == opts and unit["desiredState"] == "inactive"
    # start
    assert curl(lab, "core-01", "PUT", "units/hello.service",
                {"desiredState": "launched"}) == (204, None)

    def running() -> dict[str, Any] | None:
        _, page = curl(lab, "core-01", "GET", "state?unitName=hello.service")
        states = (page or {}).get("states", [])
        ok_states = [s for s in states if s["systemdSubState"] == "running"]
        return ok_states[0] if ok_states else None

    state = eventually(running, timeout=30, what="hello.service running")
    where = hosts[state["machineID"]]
    assert state["hash"] == fleet_hash(opts)
    assert systemd_active(lab, where, "hello.service") == "active"
    # list (units and state, filtered by machine)
    status, page = curl(lab, "core-02", "GET", "units")
    assert status == 200
    assert [(u["name"], u["desiredState"], u["currentState"], u["machineID"])
            for u in page["units"]] == [("hello.service", "launched", "launched",
                                          state["machineID"])]
    _, on_host = curl(lab, "core-02", "GET", f"state?machineID={state['machineID']}")
    assert [s["name"] for s in on_host["states"]] == ["hello.service"]
    other = next(m for m in hosts if m != state["machineID"])
    assert curl(lab, "core-02", "GET", f"state?machineID={other}") == (200, {})
    # stop
    assert curl(lab, "core-02", "PUT", "units/hello.service",
                {"desiredState": "loaded"}) == (204, None)
    eventually(lambda: systemd_active(lab, where, "hello.service") != "active",
               timeout=30, what="hello.service stopped")
    # destroy
    assert curl(lab, "core-01", "DELETE", "units/hello.service") == (204, None)
    status, err = curl(lab, "core-01", "GET", "units/hello.service")
    assert status == 404 and err["error"]["code"] == 404
    eventually(lambda: curl(lab, "core-01", "GET", "state?unitName=hello.service")[1] == {},
               timeout=30, what="hello.service state gone")


def test_one_unit_two_apis_one_hash(lab: Lab) -> None:
    opts = [{"section": "Unit", "name": "Description", "value": "made over HTTP"},
            {"section": "Service", "name": "ExecStart", "value": "/bin/sleep infinity"}]
    # HTTP -> fleetctl (gRPC on the same socket)
    assert curl(lab, "core-01", "PUT", "units/viahttp.service",
                {"desiredState": "inactive", "options": opts}) == (201, None)
    assert hashes(lab, "core-02")["viahttp.service"] == fleet_hash(opts)
    assert fleetctl(lab, "core-02", "cat", "viahttp.service") .rstrip("\n") == \
        serialize(opts).rstrip("\n")
    # fleetctl -> HTTP
    text = "[Unit]\nDescription=made by fleetctl\n\n[Service]\nExecStart=/bin/sleep 1d\n"
    ok(lab.exec("core-02", ["sh", "-c", "cat > /tmp/viactl.service"], input=text))
    fleetctl(lab, "core-02", "submit", "/tmp/viactl.service")
    status, unit = curl(lab, "core-01", "GET", "units/viactl.service")
    assert status == 200 and unit["desiredState"] == "inactive"
    assert serialize(unit["options"]) == text
    assert fleet_hash(unit["options"]) == hashes(lab, "core-01")["viactl.service"]
    for name in ("viahttp.service", "viactl.service"):
        assert curl(lab, "core-02", "DELETE", f"units/{name}") == (204, None)
    assert curl(lab, "core-01", "GET", "units") == (200, {})
