"""When to render and when to retry a reload (pure: the caller passes the time).

``Debounce`` is consul-template's ``wait {min, max}``: the first change starts a
``min`` timer, each further change restarts it, and it fires ``max`` after the
first change at the latest; a burst of changes gives one render (and one reload).
``Retry`` spaces the attempts of a reload that failed: 1 s, 2 s, 4 s ... 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetpy.confd.resource import Wait


@dataclass(slots=True)
class Debounce:
    wait: Wait
    first: float | None = None  # when the pending burst began (None: nothing pending)
    last: float | None = None

    def change(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now

    @property
    def pending(self) -> bool:
        return self.first is not None

    def due_at(self) -> float | None:
        """When the pending changes should be rendered (None: nothing pending)."""
        if self.first is None or self.last is None:
            return None
        return min(self.last + self.wait.min, self.first + self.wait.max)

    def due(self, now: float) -> bool:
        at = self.due_at()
        return at is not None and now >= at

    def fired(self) -> None:
        """Mark the pending burst rendered."""
        self.first = self.last = None


@dataclass(slots=True)
class Retry:
    """A reload that failed and must run again (not forgotten until it succeeds)."""

    initial: float = 1.0
    cap: float = 30.0
    failures: int = 0
    at: float | None = None  # when the next attempt is due (None: nothing to retry)

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; the delay before the next attempt."""
        delay = min(self.cap, self.initial * 2.0 ** self.failures)
        self.failures += 1
        self.at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.at = 0, None

    def due(self, now: float) -> bool:
        return self.at is not None and now >= self.at
