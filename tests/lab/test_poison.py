"""Poison in the registry never takes a fleetd down (issue 12), on a lab of its own.

Lab ``flpoison`` (172.17.41.0/24): 3 hosts, 1 etcd member. Bad entries are put
raw into the lab's etcd (``etcdctl put``, and the etcd client for the property
test). After each: every fleetd is still active with the same main PID and no
restart, a unit started afterwards is placed and runs, and list-unit-files
names the bad keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetpy.lab import Lab
from fleetpy.registry.etcd import EtcdRegistry
from fleetpy.registry.kv import Compare, Delete, Put, Target
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import (
    destroy_all,
    etcdctl,
    eventually,
    fleetctl,
    ok,
    running,
    write_units,
)
from tests.lab.test_secure import METRICS_PORT, samples, scrape

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

PREFIX = "/fleetpy/"
Health = dict[str, tuple[str, str, str]]  # host -> (ActiveState, MainPID, NRestarts)


@pytest.fixture(scope="module")
def poison_lab() -> Iterator[Lab]:
    with own_lab("flpoison", "172.17.41.0/24", hosts=3, etcd_members=1,
                 fleet_env={"FLEET_METRICS_ADDRESS": f"0.0.0.0:{METRICS_PORT}"}) as lab:
        yield lab


@pytest.fixture
def lab(poison_lab: Lab) -> Iterator[Lab]:
    yield poison_lab
    destroy_all(poison_lab)


def health(lab: Lab) -> Health:
    found = {}
    for host in lab.hosts:
        out = ok(lab.exec(host.name, ["systemctl", "show", "fleet.service",
                                      "-p", "ActiveState", "-p", "MainPID", "-p", "NRestarts"]))
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        found[host.name] = (props["ActiveState"], props["MainPID"], props["NRestarts"])
    return found


def start_and_run(lab: Lab, tmp_path: Path, name: str) -> None:
    """A new unit, started afterwards, is placed and runs: on core-01, whose agent got
    the schedule poison (so it has seen all of it when the unit runs)."""
    (path,) = write_units(tmp_path, {name: f"MachineID={lab.hosts[0].machine_id}"})
    result = fleetctl(lab, "start", path)
    assert f"Unit {name} launched on " in result.stdout, (result.stderr, health(lab))
    eventually(lambda: running(lab, [name]), what=f"{name} running")


def assert_fleetd_unharmed(lab: Lab, before: Health) -> None:
    now = health(lab)
    assert now == before, f"fleetd changed: before {before}, now {now}"
    assert all(state == "active" for state, _, _ in now.values())


def test_poison_entries_leave_every_fleetd_up_and_are_listed(
    lab: Lab, tmp_path: Path
) -> None:
    before = health(lab)
    m1 = lab.hosts[0].machine_id
    poison = {
        f"{PREFIX}units/garbage.service": "not json",
        f"{PREFIX}units/a/b.service": '{"hash":"h","contents":"c","desired":"launched"}',
        f"{PREFIX}schedule/{m1}/a/b": '{"hash":"h","contents":"c","target":"launched"}',
        f"{PREFIX}schedule/{m1}/.x.service":
            '{"contents":"[Service]\\nExecStart=/bin/true\\n","hash":"h","target":"launched"}',
        f"{PREFIX}machines/bogus": "not json",
        f"{PREFIX}states/{m1}/x": "[]",
        f"{PREFIX}engine/leader": "not json",
    }
    m2 = lab.hosts[1].machine_id
    etcdctl(lab, "put", f"{PREFIX}machines/{m2}", "not json")  # core-02's own record
    for key, value in poison.items():
        etcdctl(lab, "put", key, value)
    start_and_run(lab, tmp_path, "after-poison.service")
    assert_fleetd_unharmed(lab, before)

    result = fleetctl(lab, "list-unit-files", "--no-legend")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "after-poison.service"
    listed = result.stderr.splitlines()
    assert listed[0] == "Skipped 6 unreadable registry entries:", result.stderr
    for key in poison:
        if key != f"{PREFIX}engine/leader":  # cleared by the engine that now leads
            assert any(line.startswith(f"  {key}: ") for line in listed), (key, listed)
    assert any(f"{PREFIX}units/garbage.service: not JSON" in line for line in listed)
    # core-02's fleetd wrote its record again: still a machine of the cluster
    assert len(ok(fleetctl(lab, "list-machines", "--no-legend")).splitlines()) == 3
    assert not any(f"machines/{m2}" in line for line in listed)
    # counted in the metrics, by prefix (every fleetd gives the cluster-wide number)
    status, text = scrape(lab.hosts[1].ip, "/metrics")
    assert status == 200
    counts = {k: v for k, v in samples(text).items()
              if k.startswith("fleetpy_registry_unreadable_entries")}
    assert counts == {
        "fleetpy_registry_unreadable_entries{prefix=units/}": 2,
        "fleetpy_registry_unreadable_entries{prefix=schedule/}": 2,
        "fleetpy_registry_unreadable_entries{prefix=machines/}": 1,
        "fleetpy_registry_unreadable_entries{prefix=states/}": 1,
        "fleetpy_registry_unreadable_entries{prefix=waiting/}": 0,
        "fleetpy_registry_unreadable_entries{prefix=engine/leader}": 0,
        "fleetpy_registry_unreadable_entries{prefix=cordoned/}": 0,
    }, counts
    # the agent that got the unusable name skipped it
    for host in lab.hosts:
        found = lab.exec(host.name, ["test", "-e", "/run/fleet/units/.x.service"])
        assert found.returncode == 1, host.name
    # said once per fleetd, not once per pass
    for host in lab.hosts:
        log = lab.exec(host.name, ["journalctl", "-u", "fleet.service", "--no-pager", "-o",
                                   "cat"]).stdout
        lines = [x for x in log.splitlines()
                 if f"unreadable registry entry {PREFIX}units/garbage.service " in x]
        assert len(lines) <= 1, (host.name, lines)
    for key in poison:
        if key != f"{PREFIX}engine/leader":
            etcdctl(lab, "del", key)


def test_a_fleetd_starting_among_poison_stays_up(lab: Lab, tmp_path: Path) -> None:
    """Poison present before fleetd starts: its first listings (the watches' resets)."""
    m1 = lab.hosts[0].machine_id
    poison = {
        f"{PREFIX}units/garbage.service": "not json",
        f"{PREFIX}schedule/{m1}/a/b": "{}",
        f"{PREFIX}schedule/{m1}/.y.service":
            '{"contents":"[Service]\nExecStart=/bin/true\n","hash":"h","target":"launched"}',
        f"{PREFIX}machines/bogus": "[]",
    }
    for key, value in poison.items():
        etcdctl(lab, "put", key, value)
    ok(lab.exec(lab.hosts[0].name, ["systemctl", "restart", "fleet.service"]))
    eventually(lambda: health(lab)["core-01"][0] == "active", what="core-01 fleetd active")
    before = health(lab)
    start_and_run(lab, tmp_path, "after-restart.service")
    assert_fleetd_unharmed(lab, before)
    assert before["core-01"][2] == "0"  # never restarted by systemd
    for key in poison:
        etcdctl(lab, "del", key)


KEYS = st.tuples(
    st.sampled_from(["units/", "schedule/", "schedule/{m}/", "machines/", "machines/{m}",
                     "states/{m}/",
                     "waiting/", "engine/leader", "engine/"]),
    st.text(min_size=0, max_size=24),
)
VALUES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"{}", b"[]", b"null", b'"x"', b"1", b'{"hash":1}',
                     b'{"machine_id":7}', b'{"id":"x","public_ip":"","metadata":[]}']),
)


def test_property_any_bytes_under_any_registry_key_leave_fleetd_up(
    lab: Lab, tmp_path: Path
) -> None:
    before = health(lab)
    m1 = lab.hosts[0].machine_id
    registry = EtcdRegistry(lab.etcd_endpoints, PREFIX)
    written: dict[bytes, bytes] = {}
    loop = asyncio.new_event_loop()

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(key=KEYS, value=VALUES)
    def put_poison(key: tuple[str, str], value: bytes) -> None:
        full = (PREFIX + key[0].format(m=m1) + key[1]).encode("utf-8", "surrogatepass")
        loop.run_until_complete(registry.backend.txn([], [Put(full, value)]))
        written[full] = value

    try:
        put_poison()
        assert len(written) >= 10, written  # distinct keys really put
        start_and_run(lab, tmp_path, "after-property.service")
        assert_fleetd_unharmed(lab, before)
    finally:
        for key, value in written.items():  # only what is still ours (not a real leader's)
            loop.run_until_complete(registry.backend.txn(
                [Compare(key, Target.VALUE, value)], [Delete(key)]))
        loop.run_until_complete(registry.close())
        loop.close()
