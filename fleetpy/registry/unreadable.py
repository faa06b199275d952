"""Registry entries that do not decode: skipped, said once, shown to the user.

Anything can be written under the registry prefix (``etcdctl put``, a bug, a
newer fleetpy). Every reader decodes entries where it reads them; an entry that
does not decode or validate is skipped (never fatal) and becomes an
:class:`Unreadable`: its full key, its mod revision and the problem.

:class:`ReportOnce` logs each one once per (key, mod revision): a reader that
sees the same bad entry on every pass says so once, and again only when the
entry is rewritten. ``REPORTS`` is the process's one instance, shared by the
registry's lists and the engine's and agent's views.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from fleetpy.model.names import quote

log = logging.getLogger("fleetpy.registry.unreadable")

# The prefixes whose entries fleetpy reads (relative to the registry prefix).
PREFIXES = ("units/", "schedule/", "states/", "machines/", "waiting/", "engine/leader",
            "cordoned/")


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A registry entry that was skipped: full key, mod revision, what is wrong."""

    key: str
    problem: str
    revision: int = 0

    @property
    def shown_key(self) -> str:
        """The key fit for a terminal or a log line (odd characters escaped)."""
        return shown(self.key)


def shown(key: str) -> str:
    """``key`` as is when printable, else quoted with escapes (never raises)."""
    if key.isprintable() and '"' not in key and " " not in key:
        return key
    return quote(key, limit=200)


def problem_of(relative_key: str, exc: Exception) -> str:
    """The decoder's message without the key it starts with (the key is shown anyway)."""
    text = str(exc) or type(exc).__name__
    return text.removeprefix(f"{relative_key}: ")


def prefix_of(relative_key: str) -> str:
    """Which of :data:`PREFIXES` a relative key is under (``other`` for none)."""
    for prefix in PREFIXES:
        if relative_key.startswith(prefix):
            return prefix
    return "other"


class ReportOnce:
    """Log each unreadable entry once per (key, mod revision)."""

    def __init__(self) -> None:
        self._reported: dict[str, tuple[int, str]] = {}

    def report(self, entry: Unreadable) -> bool:
        """Log ``entry`` unless it was already logged at this revision; True if logged."""
        seen = self._reported.get(entry.key)
        if seen is not None and (entry.revision == seen[0] if entry.revision
                                 else entry.problem == seen[1]):
            return False
        self._reported[entry.key] = (entry.revision, entry.problem)
        log.warning("skipping unreadable registry entry %s (revision %d): %s",
                    entry.shown_key, entry.revision, entry.problem)
        return True

    def report_all(self, entries: Mapping[str, Unreadable]) -> None:
        for entry in entries.values():
            self.report(entry)

    def sync(self, before: Mapping[str, Unreadable], after: Mapping[str, Unreadable]) -> None:
        """After a fold: log the new ones, forget those that are gone or readable now."""
        for rel, entry in before.items():
            if rel not in after:
                self.forget(entry.key)
        self.report_all(after)

    def forget(self, key: str) -> None:
        """The entry was deleted or became readable: a later bad write is news."""
        self._reported.pop(key, None)


REPORTS = ReportOnce()
