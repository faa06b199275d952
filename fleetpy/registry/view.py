"""Keep a dict in step with a resumable watch (pure: no I/O).

Every watcher (the agent's schedule, the engine's units, machines and
schedule) folds ``WatchUpdate``s into a local view the same way: a reset
replaces the view, events put or delete one entry. ``apply_update`` does it
once and says what changed, so callers only add what is theirs (logging,
bookkeeping).

An entry whose key or value does not decode never raises out of the fold: it
goes to ``skipped`` (relative key -> :class:`Unreadable`) instead, and the
view keeps what it had for that key, if anything (a good entry overwritten
with garbage is not taken for a deletion). A later good write or a delete
takes it out of ``skipped``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from fleetpy.registry.base import EventKind, WatchUpdate
from fleetpy.registry.unreadable import Unreadable, problem_of

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _skip(
    skipped: dict[str, Unreadable], prefix: str, rel: str, exc: Exception, revision: int
) -> None:
    problem = problem_of(rel, exc)
    old = skipped.get(rel)
    if old is not None and old.problem == problem and (not revision or revision == old.revision):
        return
    skipped[rel] = Unreadable(prefix + rel, problem, revision)


def apply_update(
    view: dict[K, V],
    update: WatchUpdate,
    key_of: Callable[[str], K],
    decode: Callable[[str, bytes, int], V],
    skipped: dict[str, Unreadable] | None = None,
    prefix: str = "",
) -> list[tuple[K, V | None, V | None]]:
    """Fold ``update`` into ``view``; return (key, old, new) per changed entry.

    ``key_of`` maps a relative registry key to the view's key; ``decode``
    turns (relative key, value, revision) into the entry. ``new`` is None for
    a deletion, ``old`` is None for an entry that was not there. A reset
    reports the difference between the old view and the listing. Entries
    that do not decode (ValueError from ``key_of`` or ``decode``) are put in
    ``skipped``, their keys shown with ``prefix`` (the registry prefix).
    """
    bad = skipped if skipped is not None else {}
    if update.reset:
        before = dict(view)
        earlier = dict(bad)
        view.clear()
        bad.clear()
        for rel, value in update.items.items():
            revision = update.revisions.get(rel, 0)
            key: K | None = None
            try:
                key = key_of(rel)
                view[key] = decode(rel, value, revision or update.revision)
            except ValueError as exc:
                if rel in earlier:
                    bad[rel] = earlier[rel]
                _skip(bad, prefix, rel, exc, revision)
                if key is not None and key in before:
                    view[key] = before[key]
        return [
            (key, before.get(key), view.get(key))
            for key in before.keys() | view.keys()
            if before.get(key) != view.get(key)
        ]
    changes: list[tuple[K, V | None, V | None]] = []
    for event in update.events:
        try:
            key = key_of(event.key)
            if event.kind == EventKind.DELETE:
                bad.pop(event.key, None)
                if key in view:
                    old = view.pop(key)
                    changes.append((key, old, None))
                continue
            new = decode(event.key, event.value, event.revision)
        except ValueError as exc:
            if event.kind == EventKind.DELETE:
                bad.pop(event.key, None)
            else:
                _skip(bad, prefix, event.key, exc, event.revision)
            continue
        bad.pop(event.key, None)
        old_value = view.get(key)
        view[key] = new
        changes.append((key, old_value, new))
    return changes
