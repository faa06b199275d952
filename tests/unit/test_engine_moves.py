"""Engine plan when machines come and go or change: who moves, who stays, who waits (pure)."""

from __future__ import annotations

from fleetpy.engine.plan import plan_engine
from fleetpy.model.types import Machine
from fleetpy.registry.base import UnitRecord
from tests.unit.test_engine_plan import IDS, apply, entry, layout, machines, rec

DB = rec("db.service")
SIDE = rec("side.service", "MachineOf=db.service")
PIN = rec("pin.service", "MachineID=a1b2c3d4")
OTHER = rec("other.service")


def nginx(i: int) -> list[UnitRecord]:
    return [
        rec(f"nginx@{i}.service", "Conflicts=nginx@*.service"),
        rec(f"nginx-discovery@{i}.service", "MachineOf=nginx@%i.service"),
    ]


def test_machine_gone_follower_moves_with_its_leader_and_a_pinned_unit_says_why() -> None:
    units = [DB, SIDE, PIN, OTHER]
    schedule = [entry(DB, "a"), entry(SIDE, "a"), entry(PIN, "a"), entry(OTHER, "b")]
    plan = plan_engine(units, machines("bc"), schedule)
    assert layout(apply(schedule, plan)) == {
        "db.service": "c", "other.service": "b", "side.service": "c"}
    assert plan.waiting == {"pin.service": "MachineID=a1b2c3d4: no such machine among 2 machines"}
    assert "scheduled side.service on c3d4e5f6 (MachineOf=db.service)" in plan.decisions
    assert "unscheduled pin.service from a1b2c3d4: machine gone" in plan.decisions
    # The machine returns: the pinned unit goes back, nothing else moves.
    after = apply(schedule, plan)
    back = plan_engine(units, machines("abc"), after, {"pin.service": plan.waiting["pin.service"]})
    assert layout(apply(after, back)) == {
        "db.service": "c", "other.service": "b", "pin.service": "a", "side.service": "c"}
    assert back.deletes == []
    assert back.waiting == {"pin.service": None}


def test_a_new_machine_takes_new_units_and_existing_ones_stay() -> None:
    old = [rec(f"u{i}.service") for i in range(4)]
    schedule = [entry(u, "ab"[i % 2]) for i, u in enumerate(old)]
    new = rec("new.service")
    plan = plan_engine([*old, new], machines("abc"), schedule)
    assert plan.deletes == []
    assert [(e.name, e.machine_id) for e in plan.puts] == [("new.service", IDS["c"])]


def test_nginx_demo_a_fourth_instance_waits_and_its_discovery_with_it() -> None:
    units = [u for i in range(4) for u in nginx(i)]
    plan = plan_engine(units, machines("abc"), [])
    placed = layout(apply([], plan))
    assert {placed[f"nginx@{i}.service"] for i in range(3)} == {"a", "b", "c"}
    for i in range(3):
        assert placed[f"nginx-discovery@{i}.service"] == placed[f"nginx@{i}.service"]
    assert plan.waiting["nginx@3.service"].startswith(
        "Conflicts: nginx@*.service runs on every eligible machine (a1b2c3d4: nginx@")
    assert plan.waiting["nginx-discovery@3.service"] == (
        "MachineOf=nginx@3.service: waiting for nginx@3.service to be scheduled")
    # A host stops: its nginx cannot move anywhere (Conflicts), and says so.
    after = apply([], plan)
    gone = next(m for m in "abc" if placed["nginx@0.service"] == m)
    left = "".join(m for m in "abc" if m != gone)
    waiting = {n: r for n, r in plan.waiting.items() if r}
    stopped = plan_engine(units, machines(left), after, waiting, plan.specs)
    assert "nginx@0.service" not in layout(apply(after, stopped))
    assert stopped.waiting["nginx@0.service"].startswith("Conflicts: nginx@*.service runs on")
    assert stopped.waiting["nginx-discovery@0.service"].startswith("MachineOf=nginx@0.service")


def test_metadata_changes_place_waiting_units_and_move_placed_ones() -> None:
    web = rec("web.service", "MachineMetadata=role=web")
    bare = [Machine(IDS["a"], "10.0.0.1"), Machine(IDS["b"], "10.0.0.2")]
    plan = plan_engine([web], bare, [])
    assert plan.waiting["web.service"].startswith("no machine matches MachineMetadata role=web")
    tagged = [bare[0], Machine(IDS["b"], "10.0.0.2", {"role": "web"})]
    placed = plan_engine([web], tagged, [], {"web.service": plan.waiting["web.service"]})
    assert layout(apply([], placed)) == {"web.service": "b"}
    assert placed.waiting == {"web.service": None}
    schedule = apply([], placed)
    moved = plan_engine([web], [Machine(IDS["a"], "10.0.0.1", {"role": "web"}), bare[1]],
                        schedule)
    assert layout(apply(schedule, moved)) == {"web.service": "a"}
    assert moved.decisions[0] == (
        "unscheduled web.service from b2c3d4e5: machine does not match MachineMetadata role=web")
