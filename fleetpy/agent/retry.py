"""Failed agent tasks: the error to report, and when to try the unit again (back-off).

A unit whose stop, unload or load failed is held back for BACKOFF_MIN_S,
then twice as long after each further failure, up to BACKOFF_MAX_S; the
planner gets the units held back as a plain set (it has no clock). A failed
start is not retried by itself (fleet's record says it was launched; a new
``fleetctl start`` asks again). A failure belongs to the desired state it
failed for: once the schedule asks something else of the unit (a new hash or
target, or the unit is no longer scheduled here) the failure and its back-off
are dropped, so the new request is tried at once.

A unit systemd cannot load at all (``stuck``) is held until its desired
state changes: loading it again would only repeat the daemon-reload.

The clock is the caller's: every method takes ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0

Key = tuple[str, str] | None  # (hash, target) of the desired state; None: not scheduled


@dataclass(frozen=True, slots=True)
class Failure:
    key: Key
    error: str
    delay: float  # the back-off in force (0: no automatic retry)
    retry_at: float | None


class Failures:
    def __init__(self) -> None:
        self._by_name: dict[str, Failure] = {}

    def stuck(self, name: str, key: Key, error: str) -> Failure:
        """A failure no retry can mend (systemd cannot load the file): the unit is held
        until the schedule asks something else of it (a new hash or target)."""
        failure = self._by_name[name] = Failure(key, error, 0.0, math.inf)
        return failure

    def failed(self, name: str, key: Key, error: str, now: float, retry: bool) -> Failure:
        old = self._by_name.get(name)
        if not retry:
            failure = Failure(key, error, 0.0, None)
        else:
            same = old is not None and old.key == key and old.delay > 0
            delay = min(old.delay * 2, BACKOFF_MAX_S) if same and old else BACKOFF_MIN_S
            failure = Failure(key, error, delay, now + delay)
        self._by_name[name] = failure
        return failure

    def succeeded(self, name: str) -> None:
        self._by_name.pop(name, None)

    def forget_stale(self, keys: Mapping[str, Key]) -> list[str]:
        """Drop failures for a desired state that changed; return their names."""
        stale = [n for n, f in self._by_name.items() if f.key != keys.get(n)]
        for name in stale:
            del self._by_name[name]
        return stale

    def holding(self, now: float) -> set[str]:
        return {n for n, f in self._by_name.items() if f.retry_at is not None and f.retry_at > now}

    def next_retry(self) -> float | None:
        times = [f.retry_at for f in self._by_name.values()
                 if f.retry_at is not None and f.retry_at != math.inf]
        return min(times) if times else None

    def error(self, name: str) -> str:
        failure = self._by_name.get(name)
        return failure.error if failure is not None else ""
