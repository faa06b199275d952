"""apply_update: a dict view kept in step with watch updates."""

from __future__ import annotations

from fleetpy.registry.base import Event, EventKind, WatchUpdate
from fleetpy.registry.view import apply_update


def key_of(rel: str) -> str:
    return rel.rsplit("/", 1)[1]


def decode(rel: str, value: bytes, revision: int) -> str:
    return f"{value.decode()}@{revision}"


def test_reset_replaces_the_view_and_reports_the_difference() -> None:
    view = {"a": "1@1", "b": "2@1"}
    update = WatchUpdate(revision=5, reset=True, items={"x/b": b"2", "x/c": b"3"})
    changes = apply_update(view, update, key_of, decode)
    assert view == {"b": "2@5", "c": "3@5"}
    assert sorted(changes, key=lambda c: c[0]) == [
        ("a", "1@1", None), ("b", "2@1", "2@5"), ("c", None, "3@5")
    ]


def test_events_put_and_delete_in_order() -> None:
    view = {"a": "1@1"}
    update = WatchUpdate(revision=7, events=[
        Event(EventKind.PUT, "x/b", b"2", 6),
        Event(EventKind.DELETE, "x/a", b"", 7),
        Event(EventKind.DELETE, "x/zz", b"", 7),
    ])
    changes = apply_update(view, update, key_of, decode)
    assert view == {"b": "2@6"}
    assert changes == [("b", None, "2@6"), ("a", "1@1", None)]


def test_an_unchanged_reset_reports_nothing() -> None:
    view = {"a": "1@3"}
    update = WatchUpdate(revision=3, reset=True, items={"x/a": b"1"})
    assert apply_update(view, update, key_of, decode) == []
