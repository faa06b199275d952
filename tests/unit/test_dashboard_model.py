"""The dashboard's view model (pure): registry snapshot -> the page's JSON."""

from __future__ import annotations

import pytest

from fleetpy.config import ConfigError, load
from fleetpy.dashboard.model import fold, machine_state, placements_of, view
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.model.unitfile import unit_hash
from fleetpy.registry import codec
from fleetpy.registry.base import Event, EventKind, WatchUpdate


def _unit(name: str, desired: TargetState = TargetState.LAUNCHED) -> tuple[str, bytes]:
    contents = f"[Service]\nExecStart=/bin/sleep 1d\n# {name}\n"
    return codec.unit_key(name), codec.encode_unit(
        UnitFile(name, contents, unit_hash(contents)), desired)


def _sched(name: str, machine_id: str, target: TargetState = TargetState.LAUNCHED,
           hash_: str = "h1") -> tuple[str, bytes]:
    return codec.schedule_key(machine_id, name), codec.encode_scheduled(
        ScheduledUnit(name, machine_id, target, hash_, "[Service]\n"))


def snapshot() -> dict[str, bytes]:
    return dict([
        (codec.machine_key("m1"), codec.encode_machine(Machine("m1", "10.0.0.1", {"z": "1"}))),
        (codec.machine_key("m2"), codec.encode_machine(Machine("m2", "10.0.0.2"))),
        _unit("web.service"),
        _unit("db.service"),
        _unit("log.service", TargetState.LAUNCHED),
        _sched("web.service", "m1"),
        _sched("log.service", "m1"),
        _sched("log.service", "m2", TargetState.LOADED),
        (codec.state_key("m1", "web.service"), codec.encode_state(
            UnitState("web.service", "m1", "loaded", "failed", "failed", "h1"))),
        (codec.waiting_key("db.service"), codec.encode_waiting("no machine has disk=ssd")),
        (codec.LEADER, codec.encode_leader("m2")),
        ("units/bad.service", b"not json"),  # unreadable: left out, never fatal
    ])


def test_view_lists_machines_units_waiting_and_the_leader() -> None:
    v = view(snapshot(), [], "m1")
    assert v["this_machine"] == "m1" and v["leader"] == "m2"
    assert [(m["id"], m["ip"], m["metadata"], m["state"], m["leader"]) for m in v["machines"]] == [
        ("m1", "10.0.0.1", {"z": "1"}, "ready", False),
        ("m2", "10.0.0.2", {}, "ready", True)]
    assert "units" not in v["machines"][0]  # the page lists them from the units' placements
    units = {u["name"]: u for u in v["units"]}
    assert [(n, p["active"]) for n, u in units.items() for p in u["placements"]
            if p["machine"] == "m1"] == [("log.service", ""), ("web.service", "failed")]
    assert sorted(units) == ["db.service", "log.service", "web.service"]
    assert units["db.service"]["placements"] == []
    assert units["db.service"]["waiting"] == "no machine has disk=ssd"
    assert units["web.service"]["placements"] == [{
        "machine": "m1", "ip": "10.0.0.1", "state": "launched", "load": "loaded",
        "active": "failed", "sub": "failed", "hash": "h1"}]
    assert [(p["machine"], p["state"]) for p in units["log.service"]["placements"]] == [
        ("m1", "launched"), ("m2", "loaded")]
    assert v["waiting"] == [{"name": "db.service", "reason": "no machine has disk=ssd"}]


def test_view_is_the_same_for_the_same_snapshot_and_newest_placement_first() -> None:
    p = [{"at": 1.0, "unit": "a"}, {"at": 2.0, "unit": "b"}]
    assert view(snapshot(), p, "m1") == view(dict(reversed(snapshot().items())), p, "m1")
    assert [x["unit"] for x in view(snapshot(), p, "m1")["placements"]] == ["b", "a"]


def test_placements_from_schedule_changes() -> None:
    key, placed = _sched("web.service", "m1")
    _, loaded = _sched("web.service", "m1", TargetState.LOADED)
    _, rehashed = _sched("web.service", "m1", TargetState.LOADED, "h2")
    changes = [(key, None, placed), (key, placed, loaded), (key, loaded, rehashed),
               (key, rehashed, rehashed), (key, rehashed, None),
               (_unit("x.service")[0], None, b"{}"), ("schedule/m1/bad", None, b"x")]
    assert [(p["unit"], p["machine"], p["action"], p["at"]) for p in
            placements_of(changes, 5.0)] == [
        ("web.service", "m1", "placed", 5.0), ("web.service", "m1", "target loaded", 5.0),
        ("web.service", "m1", "new contents", 5.0), ("web.service", "m1", "unscheduled", 5.0)]


def test_fold_follows_resets_and_events() -> None:
    snap: dict[str, bytes] = {"old": b"1"}
    changes = fold(snap, WatchUpdate(revision=3, reset=True, items={"a": b"1", "b": b"2"}))
    assert snap == {"a": b"1", "b": b"2"}
    assert sorted(changes) == [("a", None, b"1"), ("b", None, b"2"), ("old", b"1", None)]
    changes = fold(snap, WatchUpdate(revision=4, events=[
        Event(EventKind.PUT, "a", b"9", 4), Event(EventKind.DELETE, "b", b"", 4)]))
    assert snap == {"a": b"9"} and changes == [("a", b"1", b"9"), ("b", b"2", None)]


def test_machine_state_is_ready_unless_cordoned_or_draining() -> None:
    assert machine_state({}, "m1") == "ready"
    assert machine_state({"cordoned/m2": b'{"state":"draining"}'}, "m1") == "ready"
    assert machine_state({"cordoned/m1": b'{"state":"cordoned","by":"me"}'}, "m1") == "cordoned"
    assert machine_state({"cordoned/m1": b'{"state":"draining"}'}, "m1") == "draining"
    assert machine_state({"cordoned/m1": b"garbage"}, "m1") == "cordoned"
    snap = {**snapshot(), "cordoned/m2": b'{"state":"draining","move":[]}'}
    assert [m["state"] for m in view(snap, [], "m1")["machines"]] == ["ready", "draining"]


def test_dashboard_address_setting() -> None:
    assert load(None, {}, {}).dashboard_address == ""
    assert load(None, {"FLEET_DASHBOARD_ADDRESS": "10.0.0.1:8080"}, {}).dashboard_address \
        == "10.0.0.1:8080"
    assert load("dashboard_address=:8080\n", {}, {}).dashboard_address == ":8080"
    with pytest.raises(ConfigError, match="dashboard_address: '8080' is not HOST:PORT"):
        load(None, {"FLEET_DASHBOARD_ADDRESS": "8080"}, {})


def test_a_memo_of_decoded_entries_changes_nothing_in_the_view() -> None:
    snap = snapshot()
    memo: dict[str, tuple[bytes, object]] = {}
    assert view(snap, [], "m1", memo) == view(snap, [], "m1")
    assert set(memo) == set(snap) - {codec.LEADER}
    snap[codec.state_key("m1", "web.service")] = codec.encode_state(
        UnitState("web.service", "m1", "loaded", "active", "running", "h1"))
    del snap[codec.machine_key("m2")]
    snap[codec.unit_key("bad.service")] = b"not json"
    fresh = view(snap, [], "m1")
    assert view(snap, [], "m1", memo) == fresh
    assert fresh["units"][-1]["placements"][0]["active"] == "active"  # re-decoded
    assert codec.machine_key("m2") not in memo and memo[codec.unit_key("bad.service")][1] is None
