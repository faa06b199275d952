"""The dashboard's patches and their pacing (pure), and the feed that sends them (in-memory
registry): a page gets the whole view once, then only the rows that changed, at most a few
times a second."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from typing import Any

import pytest

from fleetpy.dashboard.feed import GATHER, HISTORY, INTERVAL, Coalescer, Feed
from fleetpy.dashboard.patch import apply, diff
from fleetpy.model.types import TargetState
from fleetpy.registry.memory import MemoryRegistry
from tests.contract.helpers import unit

pytestmark = pytest.mark.timeout(60)


def _view(units: dict[str, str], machines: tuple[str, ...] = ("m1",), leader: str = "m1",
          waiting: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "this_machine": "m1", "leader": leader,
        "machines": [{"id": m, "ip": "10.0.0.1", "metadata": {}, "state": "ready",
                      "leader": m == leader, "units": []} for m in sorted(machines)],
        "units": [{"name": n, "desired": "launched", "hash": "h", "waiting": "",
                   "placements": [{"machine": "m1", "active": a}]}
                  for n, a in sorted(units.items())],
        "waiting": [{"name": n, "reason": "no room"} for n in sorted(waiting)],
        "placements": [],
    }


def test_a_patch_carries_only_the_rows_that_changed() -> None:
    old = _view({f"u{i:04}.service": "inactive" for i in range(1000)})
    new = _view({**{f"u{i:04}.service": "inactive" for i in range(1, 1000)},
                 "u0007.service": "active", "zz.service": "activating"},
                waiting=("w.service",))
    patch = diff(old, new)
    assert patch == {
        "set": {"units": [new["units"][6], new["units"][-1]],
                "waiting": [{"name": "w.service", "reason": "no room"}]},
        "del": {"units": ["u0000.service"]},
    }
    assert len(json.dumps(patch)) < len(json.dumps(new)) / 100
    assert apply(old, patch) == new
    assert diff(new, new) == {}


def test_top_level_values_are_sent_whole_when_they_change() -> None:
    old = _view({}, machines=("m1", "m2"))
    new = _view({}, machines=("m1", "m2"), leader="m2")
    new["placements"] = [{"at": 1.0, "unit": "a.service", "machine": "m2", "action": "placed",
                          "target": "launched"}]
    patch = diff(old, new)
    assert patch["leader"] == "m2" and patch["placements"] == new["placements"]
    assert [m["id"] for m in patch["set"]["machines"]] == ["m1", "m2"]  # the leader flag moved
    assert apply(old, patch) == new


def test_patches_between_random_views_rebuild_each_view() -> None:
    rng = random.Random(7)
    names = [f"u{i}.service" for i in range(40)]
    states = ("active", "inactive", "failed")

    def some() -> dict[str, Any]:
        return _view({n: rng.choice(states) for n in names if rng.random() < 0.7},
                     machines=tuple(m for m in ("m1", "m2", "m3") if rng.random() < 0.7),
                     leader=rng.choice(("m1", "m2", "")),
                     waiting=tuple(n for n in names if rng.random() < 0.1))

    current = {"units": [], "machines": [], "waiting": []}  # what a page starts from
    for _ in range(200):
        target = some()
        current = apply(current, diff(current, target))
        assert current == target


def test_coalescing_shows_each_change_within_a_quarter_second_at_most_four_times_a_second(
) -> None:
    pace = Coalescer()
    assert pace.due() is None  # nothing changed: nothing to render
    pace.changed(10.0)
    assert pace.due() == pytest.approx(10.0 + GATHER)  # quiet before: shown at once
    rendered: list[float] = []
    changes = [10.0 + i * 0.003 for i in range(2000)]  # 2000 changes over 6 s
    clock = 10.0
    for at in changes:
        due = pace.due()
        while due is not None and due <= at:  # the feed renders when due, before `at`
            clock = due
            rendered.append(clock)
            pace.rendered(clock)
            due = pace.due()
        pace.changed(at)
    due = pace.due()
    assert due is not None
    rendered.append(due)
    pace.rendered(due)
    assert pace.due() is None
    gaps = [b - a for a, b in itertools.pairwise(rendered)]
    assert min(gaps) >= INTERVAL - 1e-9
    assert len(rendered) <= 6 / INTERVAL + 2  # 2000 changes, ~25 views
    for at in changes:  # every change is in a view within max(GATHER, INTERVAL)
        shown = next(r for r in rendered if r >= at)
        assert shown - at <= max(GATHER, INTERVAL) + 1e-9


async def test_feed_sends_the_view_then_patches_and_the_view_again_to_a_page_far_behind(
) -> None:
    registry = MemoryRegistry()
    feed = Feed(registry, "m1")
    task = asyncio.create_task(feed.run())
    try:
        async with asyncio.timeout(5):
            version, kind, texts = await feed.next(0)
        assert kind == "view" and json.loads(texts[0])["units"] == []

        await registry.create_unit(unit("a.service"), TargetState.LAUNCHED)
        async with asyncio.timeout(2):
            version2, kind, texts = await feed.next(version)
        assert kind == "patch" and len(texts) == version2 - version
        assert [u["name"] for u in json.loads(texts[-1])["set"]["units"]] == ["a.service"]

        for i in range(HISTORY + 2):  # each its own view: a page that reads none of them ...
            before = feed.version
            await registry.create_unit(unit(f"b{i:02}.service"), TargetState.LAUNCHED)
            async with asyncio.timeout(2):
                await feed.next(before)
        async with asyncio.timeout(2):
            _, kind, texts = await feed.next(version2)
        assert kind == "view"  # ... gets the whole view: its patches are no longer kept
        assert len(json.loads(texts[0])["units"]) == HISTORY + 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await registry.close()
