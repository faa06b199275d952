"""Poison entries put raw (as ``etcdctl put`` would) are skipped by lists and watches
and reported with their key and problem: on the in-memory registry and real etcd,
through the registry, fleetctl's etcd driver and the API.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import aclosing
from pathlib import Path

import pytest

from fleetpy.model.types import TargetState
from fleetpy.registry.base import UnitRecord
from fleetpy.registry.etcd import EtcdRegistry
from fleetpy.registry.kv import Put
from fleetpy.registry.store import KVRegistry
from fleetpy.registry.unreadable import Unreadable
from fleetpy.registry.view import apply_update
from tests.contract.conftest import Cluster
from tests.contract.helpers import machine, next_update, scheduled, state, unit
from tests.fixtures.etcd import EtcdProcess
from tests.unit.test_ctl_support import Cluster as CtlCluster

POISON = {
    "units/garbage.service": b"not json",
    "units/a/b.service": b'{"hash":"h","contents":"c","desired":"loaded"}',
    "units/hash.service": b'{"hash":"0","contents":"c","desired":"loaded"}',
    "schedule/m1/a/b": b"{}",
    "schedule/m1/no-suffix": b'{"hash":"h","contents":"c","target":"loaded"}',
    "machines/m9": b'{"id":"other","public_ip":"1.2.3.4","metadata":{}}',
    "states/m1/x": b"[]",
    "waiting/a/b": b'{"reason":"r"}',
}


async def put_raw(registry: KVRegistry, items: dict[str, bytes]) -> dict[str, int]:
    """Write each item as is (no codec); returns each key's mod revision."""
    revisions = {}
    for rel, value in items.items():
        result = await registry.backend.txn([], [Put((registry.prefix + rel).encode(), value)])
        revisions[rel] = result.revision
    return revisions


async def good_entries(registry: KVRegistry) -> None:
    lease = await registry.grant_lease(30)
    assert await registry.register_machine(machine("m1"), lease)
    await registry.put_unit(unit("a.service"), TargetState.LAUNCHED)
    token = await registry.campaign("m1", lease)
    assert token is not None
    await registry.apply_schedule(token, [scheduled("a.service", "m1")], [],
                                  {"b.service": "no machine"})
    await registry.put_unit_states([state("a.service", "m1")], lease)
    await registry.resign(token)


async def test_lists_skip_poison_and_list_unreadable_names_it(cluster: Cluster) -> None:
    registry = cluster.first
    await good_entries(registry)
    revisions = await put_raw(registry, POISON)
    assert [r.unit.name for r in await registry.list_units()] == ["a.service"]
    assert [(s.machine_id, s.name) for s in await registry.list_schedule()] == [
        ("m1", "a.service")]
    assert [m.id for m in await registry.list_machines()] == ["m1"]
    assert [s.name for s in await registry.list_unit_states()] == ["a.service"]
    assert await registry.list_waiting() == {"b.service": "no machine"}
    bad = await registry.list_unreadable()
    assert [u.key for u in bad] == sorted(registry.prefix + rel for rel in POISON)
    by_key = {u.key[len(registry.prefix):]: u for u in bad}
    assert {rel: u.revision for rel, u in by_key.items()} == revisions
    assert by_key["units/garbage.service"].problem.startswith("not JSON")
    assert "expected units/<name>" in by_key["units/a/b.service"].problem
    assert "not the hash of its contents" in by_key["units/hash.service"].problem
    assert "expected schedule/<machine_id>/<name>" in by_key["schedule/m1/a/b"].problem
    assert "invalid unit name" in by_key["schedule/m1/no-suffix"].problem
    assert "not the key's machine id" in by_key["machines/m9"].problem


async def test_watches_skip_poison_and_fold_the_rest(cluster: Cluster) -> None:
    registry = cluster.first
    await registry.put_unit(unit("a.service"), TargetState.LAUNCHED)
    await put_raw(registry, {"units/garbage.service": b"not json"})
    view: dict[str, UnitRecord] = {}
    skipped: dict[str, Unreadable] = {}

    def fold(update: object) -> None:
        apply_update(view, update, lambda rel: rel.split("/", 1)[1],  # type: ignore[arg-type]
                     _decode_unit, skipped, registry.prefix)

    async with aclosing(registry.watch("units/")) as watch:
        fold(await next_update(watch))  # the reset
        assert list(view) == ["a.service"]
        assert list(skipped) == ["units/garbage.service"]
        await put_raw(registry, {"units/a/b.service": b"{}", "units/a.service": b"[]"})
        while "units/a.service" not in skipped:
            fold(await next_update(watch))
        assert list(view) == ["a.service"]  # the good record stays; garbage is not a delete
        assert sorted(skipped) == ["units/a.service", "units/a/b.service",
                                   "units/garbage.service"]
        await registry.put_unit(unit("a.service", "[Service]\nExecStart=/bin/true\n"),
                                TargetState.LOADED)
        while "units/a.service" in skipped:
            fold(await next_update(watch))
        assert view["a.service"].desired == TargetState.LOADED


def _decode_unit(rel: str, value: bytes, revision: int) -> UnitRecord:
    from fleetpy.registry.codec import decode_unit

    return decode_unit(rel, value, revision)


@pytest.mark.parametrize("value", [b"not json", b'{"machine_id":"m2"}'])
async def test_an_unusable_leader_key_is_cleared_by_campaign(
    cluster: Cluster, value: bytes
) -> None:
    registry = cluster.first
    await put_raw(registry, {"engine/leader": value})  # no lease: it would never expire
    assert await registry.get_leader() == (None if value == b"not json" else "m2")
    lease = await registry.grant_lease(30)
    token = await registry.campaign("m1", lease)
    assert token is not None
    assert await registry.get_leader() == "m1"
    # a real leader's key is never taken
    other = cluster.connect()
    assert await other.campaign("m2", await other.grant_lease(30)) is None
    assert await registry.get_leader() == "m1"


@pytest.mark.parametrize("value", [b"not json", b'{"id":"m1","public_ip":"","metadata":{}}'])
async def test_a_machine_record_no_agent_holds_is_taken_over(
    cluster: Cluster, value: bytes
) -> None:
    registry = cluster.first
    await put_raw(registry, {"machines/m1": value})  # no lease: it would never expire
    lease = await registry.grant_lease(30)
    assert await registry.register_machine(machine("m1"), lease)
    assert await registry.list_machines() == [machine("m1")]
    # a live agent's record is still refused
    other = cluster.connect()
    assert not await other.register_machine(machine("m1"), await other.grant_lease(30))


@pytest.mark.etcd
def test_fleetctl_lists_unreadable_entries_over_etcd_and_the_api(
    etcd_server: EtcdProcess, etcd_prefix: str
) -> None:
    with CtlCluster(registry=lambda: EtcdRegistry(etcd_server.endpoint, etcd_prefix)) as c:
        c.run(put_raw(c.registry, {"units/garbage.service": b"not json",  # type: ignore[arg-type]
                                   "schedule/m/a/b": b"{}"}))
        c.run(c.registry.put_unit(unit("a.service"), TargetState.INACTIVE))
        short = Path(tempfile.mkdtemp(prefix="fctl", dir="/tmp"))
        try:
            api = c.start_api(str(short / "fleet.sock"))
            for via in (None, api):
                r = c.ctl("list-unit-files", "--no-legend", api=via)
                assert r.exit_code == 0, r.output
                assert r.stdout.split()[0] == "a.service"
                assert r.stderr.splitlines() == [
                    "Skipped 2 unreadable registry entries:",
                    f"  {etcd_prefix}schedule/m/a/b: key 'schedule/m/a/b': "
                    "expected schedule/<machine_id>/<name>",
                    f"  {etcd_prefix}units/garbage.service: not JSON: "
                    "Expecting value: line 1 column 1 (char 0)",
                ], via
                r = c.ctl("list-unit-files", "--output", "json", api=via)
                assert r.exit_code == 0 and '"unit": "a.service"' in r.stdout
                assert '"unreadable"' in r.stderr
                assert f'"key": "{etcd_prefix}units/garbage.service"' in r.stderr
        finally:
            shutil.rmtree(short, ignore_errors=True)
