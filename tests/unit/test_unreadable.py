"""Registry entries that do not decode: decoders, the watch fold, said once, per-unit planning.

Pure: tables of bad shapes through the decoders and ``apply_update``; the
engine planner with one unit whose planning raises.
"""

from __future__ import annotations

import logging

import pytest

from fleetpy.engine import placement
from fleetpy.engine import plan as engine_plan
from fleetpy.model.types import Machine, ScheduledUnit, TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry import codec
from fleetpy.registry.base import Event, EventKind, UnitRecord, WatchUpdate
from fleetpy.registry.unreadable import ReportOnce, Unreadable, prefix_of
from fleetpy.registry.view import apply_update

HELLO = make_unit_file("hello.service", "[Service]\nExecStart=/bin/true\n")
GOOD_UNIT = codec.encode_unit(HELLO, TargetState.LAUNCHED)
ENTRY = ScheduledUnit("hello.service", "m1", TargetState.LAUNCHED, HELLO.hash, HELLO.contents)
GOOD_SCHEDULE = codec.encode_scheduled(ENTRY)
GOOD_MACHINE = codec.encode_machine(Machine("m1", "10.0.0.1", {"a": "b"}))
GOOD_STATE = b'{"active":"active","hash":"h","load":"loaded","sub":"running"}'

GOOD = [
    ("units/hello.service", GOOD_UNIT),
    ("schedule/m1/hello.service", GOOD_SCHEDULE),
    ("machines/m1", GOOD_MACHINE),
    ("states/m1/hello.service", GOOD_STATE),
    ("waiting/hello.service", b'{"reason":"why"}'),
    ("engine/leader", b'{"machine_id":"m1"}'),
    ("somebody-else/key", b"anything: not fleetpy's"),
]

BAD = [
    # (key, value, words the problem must contain)
    ("units/garbage.service", b"not json", "not JSON"),
    ("units/garbage.service", b"\xff\xfe", "not JSON"),
    ("units/hello.service", b"[1, 2]", "expected a JSON object"),
    ("units/hello.service", b'{"hash":"h","contents":"c"}', "missing desired"),
    ("units/hello.service", GOOD_UNIT.replace(b"launched", b"running"), "not a target state"),
    ("units/hello.service", GOOD_UNIT.replace(HELLO.hash.encode(), b"0" * 40), "not the hash"),
    ("units/a/b.service", GOOD_UNIT, "expected units/<name>"),
    ("units/", GOOD_UNIT, "expected units/<name>"),
    ("units/no-suffix", GOOD_UNIT, "invalid unit name"),
    ("units/bad name.service", GOOD_UNIT, "invalid character"),
    ("units/hello.unknown", GOOD_UNIT, "unknown unit type"),
    ("schedule/m1/a/b", GOOD_SCHEDULE, "expected schedule/<machine_id>/<name>"),
    ("schedule/m1", GOOD_SCHEDULE, "expected schedule/<machine_id>/<name>"),
    ("schedule/m1/x", GOOD_SCHEDULE, "invalid unit name"),
    ("schedule/m1/@x.service", GOOD_SCHEDULE, "empty prefix"),
    ("schedule/m1/.x.service", GOOD_SCHEDULE, "starts with"),
    (
        "schedule/m1/hello.service",
        b'{"hash":1,"contents":"c","target":"loaded"}',
        "hash must be a string",
    ),
    ("machines/m1", b"{}", "missing id"),
    ("machines/m2", GOOD_MACHINE, "not the key's machine id"),
    ("machines/m1/x", GOOD_MACHINE, "expected machines/<name>"),
    ("machines/m1", GOOD_MACHINE.replace(b'"b"', b"1"), "metadata must map"),
    ("states/m1/hello.service", b'{"load":"loaded"}', "missing"),
    ("states/m1/a/b.service", GOOD_STATE, "expected states/<machine_id>/<name>"),
    ("waiting/hello.service", b'{"reason":5}', "reason must be a string"),
    ("waiting/bad", b'{"reason":"x"}', "invalid unit name"),
    ("engine/leader", b"not json", "not JSON"),
    ("engine/leader", b'{"machine":"m1"}', "missing machine_id"),
    ("engine/leader/x", b'{"machine_id":"m1"}', "nothing belongs under"),
]


@pytest.mark.parametrize(("key", "value"), GOOD)
def test_good_entries_decode(key: str, value: bytes) -> None:
    codec.decode_entry(key, value)


@pytest.mark.parametrize(("key", "value", "words"), BAD)
def test_bad_entries_raise_codec_error_naming_the_problem(
    key: str, value: bytes, words: str
) -> None:
    with pytest.raises(codec.CodecError, match=words):
        codec.decode_entry(key, value)


def _units_view(
    update: WatchUpdate, view: dict[str, UnitRecord], skipped: dict[str, Unreadable]
) -> list[tuple[str, object, object]]:
    def key_of(rel: str) -> str:
        parts = rel.split("/")
        if len(parts) != 2:
            raise codec.CodecError(f"key {rel!r}: expected units/<name>")
        return parts[1]

    return apply_update(view, update, key_of, codec.decode_unit, skipped, "/fleetpy/")


@pytest.mark.parametrize(("key", "value", "words"), [b for b in BAD if b[0].startswith("units/")])
def test_the_fold_skips_a_bad_unit_and_keeps_the_good_ones(
    key: str, value: bytes, words: str
) -> None:
    view: dict[str, UnitRecord] = {}
    skipped: dict[str, Unreadable] = {}
    items = {"units/hello.service": GOOD_UNIT} if key != "units/hello.service" else {}
    items[key] = value
    update = WatchUpdate(revision=9, reset=True, items=items, revisions={key: 4})
    _units_view(update, view, skipped)
    assert list(skipped) == [key]
    assert skipped[key].key == "/fleetpy/" + key
    assert skipped[key].revision == 4
    assert words in skipped[key].problem
    assert not skipped[key].problem.startswith(key)  # the key is shown once, not twice
    assert list(view) == (["hello.service"] if key != "units/hello.service" else [])


def test_garbage_over_a_good_entry_keeps_the_good_one_until_rewritten_or_deleted() -> None:
    view: dict[str, UnitRecord] = {}
    skipped: dict[str, Unreadable] = {}
    _units_view(
        WatchUpdate(
            revision=3,
            reset=True,
            items={"units/hello.service": GOOD_UNIT},
            revisions={"units/hello.service": 3},
        ),
        view,
        skipped,
    )
    good = view["hello.service"]
    changes = _units_view(
        WatchUpdate(
            revision=4, events=[Event(EventKind.PUT, "units/hello.service", b"garbage", 4)]
        ),
        view,
        skipped,
    )
    assert changes == []
    assert view == {"hello.service": good}
    assert skipped["units/hello.service"].revision == 4
    # a re-listing (compaction) still shows garbage: the good record stays, the report too
    _units_view(
        WatchUpdate(
            revision=8,
            reset=True,
            items={"units/hello.service": b"garbage"},
            revisions={"units/hello.service": 4},
        ),
        view,
        skipped,
    )
    assert view == {"hello.service": good}
    assert skipped["units/hello.service"].revision == 4
    # a good write takes it out of the skipped entries; a delete removes both
    _units_view(
        WatchUpdate(revision=9, events=[Event(EventKind.PUT, "units/hello.service", GOOD_UNIT, 9)]),
        view,
        skipped,
    )
    assert skipped == {} and view["hello.service"].revision == 9
    _units_view(
        WatchUpdate(
            revision=10,
            events=[
                Event(EventKind.PUT, "units/x/y", b"1", 10),
                Event(EventKind.DELETE, "units/hello.service", b"", 11),
            ],
        ),
        view,
        skipped,
    )
    assert view == {} and list(skipped) == ["units/x/y"]
    _units_view(
        WatchUpdate(revision=12, events=[Event(EventKind.DELETE, "units/x/y", b"", 12)]),
        view,
        skipped,
    )
    assert skipped == {}


def test_each_bad_entry_is_logged_once_per_revision(caplog: pytest.LogCaptureFixture) -> None:
    reports = ReportOnce()
    entry = Unreadable("/fleetpy/units/garbage.service", "not JSON: x", 5)
    with caplog.at_level(logging.WARNING, logger="fleetpy.registry.unreadable"):
        assert reports.report(entry)
        for _ in range(10):
            assert not reports.report(entry)
        assert reports.report(Unreadable(entry.key, entry.problem, 6))  # rewritten
        reports.sync({"units/garbage.service": entry}, {})  # gone (deleted or good)
        assert reports.report(Unreadable(entry.key, entry.problem, 6))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "/fleetpy/units/garbage.service (revision 5): not JSON: x" in lines[0]


def test_keys_with_odd_bytes_are_shown_escaped() -> None:
    entry = Unreadable("/fleetpy/units/a\udcff b\n.service", "invalid unit name", 1)
    assert "\n" not in entry.shown_key and "\\udcff" in entry.shown_key
    assert prefix_of("schedule/m/x") == "schedule/" and prefix_of("zzz") == "other"


M1, M2 = Machine("m1", "10.0.0.1"), Machine("m2", "10.0.0.2")


def _record(name: str, contents: str = "[Service]\nExecStart=/bin/true\n") -> UnitRecord:
    return UnitRecord(make_unit_file(name, contents), TargetState.LAUNCHED)


def test_a_unit_whose_planning_raises_waits_and_the_others_are_placed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = placement.decide

    def decide(cluster: object, spec: placement.UnitSpec) -> object:
        if spec.name == "b.service":
            raise RuntimeError("boom")
        return real(cluster, spec)  # type: ignore[arg-type]

    monkeypatch.setattr(placement, "decide", decide)
    plan = engine_plan.plan_engine(
        [_record("a.service"), _record("b.service"), _record("c.service")], [M1, M2], []
    )
    assert sorted(p.name for p in plan.puts) == ["a.service", "c.service"]
    assert plan.waiting["b.service"] == "fleet cannot plan this unit: RuntimeError: boom"


def test_a_unit_whose_xfleet_parsing_raises_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine_plan.xfleet_of

    def xfleet_of(name: str, contents: str) -> object:
        if name == "b.service":
            raise KeyError("unforeseen")
        return real(name, contents)

    monkeypatch.setattr(engine_plan, "xfleet_of", xfleet_of)
    plan = engine_plan.plan_engine([_record("a.service"), _record("b.service")], [M1], [])
    assert [p.name for p in plan.puts] == ["a.service"]
    assert "KeyError" in (plan.waiting["b.service"] or "")


def test_entries_of_a_unit_whose_record_is_unreadable_are_left_alone() -> None:
    entry = ScheduledUnit("x.service", "m1", TargetState.LAUNCHED, "h", "c")
    plan = engine_plan.plan_engine(
        [_record("a.service")], [M1], [entry], unreadable=frozenset({"x.service"})
    )
    assert plan.deletes == []
    without = engine_plan.plan_engine([_record("a.service")], [M1], [entry])
    assert without.deletes == [("m1", "x.service")]  # what unreadable protects against
