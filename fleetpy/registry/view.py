"""Keep a dict in step with a resumable watch (pure: no I/O).

Every watcher (the agent's schedule, the engine's units, machines and
schedule) folds ``WatchUpdate``s into a local view the same way: a reset
replaces the view, events put or delete one entry. ``apply_update`` does it
once and says what changed, so callers only add what is theirs (logging,
bookkeeping).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from fleetpy.registry.base import EventKind, WatchUpdate

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def apply_update(
    view: dict[K, V],
    update: WatchUpdate,
    key_of: Callable[[str], K],
    decode: Callable[[str, bytes, int], V],
) -> list[tuple[K, V | None, V | None]]:
    """Fold ``update`` into ``view``; return (key, old, new) per changed entry.

    ``key_of`` maps a relative registry key to the view's key; ``decode``
    turns (relative key, value, revision) into the entry. ``new`` is None for
    a deletion, ``old`` is None for an entry that was not there. A reset
    reports the difference between the old view and the listing.
    """
    if update.reset:
        before = dict(view)
        view.clear()
        for rel, value in update.items.items():
            view[key_of(rel)] = decode(rel, value, update.revision)
        return [
            (key, before.get(key), view.get(key))
            for key in before.keys() | view.keys()
            if before.get(key) != view.get(key)
        ]
    changes: list[tuple[K, V | None, V | None]] = []
    for event in update.events:
        key = key_of(event.key)
        old = view.get(key)
        if event.kind == EventKind.DELETE:
            if key in view:
                del view[key]
                changes.append((key, old, None))
        else:
            new = decode(event.key, event.value, event.revision)
            view[key] = new
            changes.append((key, old, new))
    return changes
