"""Starts that have not settled yet: when a start counts as done.

A start is reported ``starting`` until the unit stayed up for SETTLE_S after
the agent saw it up (systemd's signal: active or activating), or sooner went
up and then down (it failed at once), or reached active/exited (a oneshot
with RemainAfterExit); only then is it ``launched``. So a unit whose process
fails right after systemd called it active is never seen as launched. A start
whose unit the agent has not seen up is looked at UNSEEN_S after StartUnit
returned (a lost signal, a unit that failed before its first signal went out,
a start job that waits). The agent owns the clock; this holds the bookkeeping.

Why 0.1 s, counted from the unit seen up (bench/settle_probe.py on a lab host,
systemd 252, 2 busy cores): a unit that fails at once (/bin/false, a missing
binary 203/EXEC, a bad User= 217/USER, a script exiting 1) is failed in
systemd 1-3 ms (median) after systemd's own ActiveEnterTimestamp, at most 26 ms
in 240 starts at load 4-7; the one slower case seen was 113 ms at load 10 (a
missing binary whose forked child waited for a core). systemd goes up 10-15 ms
(median, up to 125 ms) after StartUnit returns, so a window counted from the
unit seen up covers the unit's own first moments however long systemd took to
start it (0.2 s counted from StartUnit, before, left the unit 75-190 ms of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fleetpy.agent.plan import UP_STATES
from fleetpy.systemd.base import UnitStatus

SETTLE_S = 0.1  # a start is "launched" once the unit stayed up this long after seen up
UNSEEN_S = 0.2  # a start whose unit was not seen up is looked at this long after it
# A start still inactive at its due time, never seen up, most likely waits for its
# start job (ordered After= a unit that is itself starting, e.g. started by the same
# fleetctl start): it is given up to this long to go up before it counts as finished
# (a unit whose Condition failed stays inactive: it is reported finished then).
QUEUED_MAX_S = 5.0


class Settling:
    """The units whose start has not settled, and when each will."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}  # name -> when its start counts as settled
        self._seen_up: set[str] = set()  # of those, the ones systemd reported up since
        self._first: dict[str, float] = {}  # name -> when its start was made
        self._wake = asyncio.Event()

    def __contains__(self, name: object) -> bool:
        return name in self._at

    def started(self, name: str, now: float) -> None:
        self._at[name] = now + UNSEEN_S
        self._first[name] = now
        self._seen_up.discard(name)
        self._wake.set()

    def due(self, name: str) -> float | None:
        """When the start of NAME counts as settled unless something happens first."""
        return self._at.get(name)

    def settled(self, name: str) -> None:
        self._at.pop(name, None)
        self._first.pop(name, None)
        self._seen_up.discard(name)

    def settles_now(self, status: UnitStatus, now: float) -> bool:
        """A settling unit that went up, then down (or reached active/exited). One seen
        up for the first time counts as launched once it stayed up SETTLE_S from now."""
        up = status.active_state in UP_STATES and status.sub_state != "auto-restart"
        if up and status.sub_state != "exited":
            if status.name in self._at and status.name not in self._seen_up:
                self._at[status.name] = now + SETTLE_S
                self._wake.set()  # due sooner than the settle loop waits for
            self._seen_up.add(status.name)
            return False
        return (up and status.active_state == "active") or status.name in self._seen_up

    def still_queued(self, status: UnitStatus | None, now: float) -> bool:
        """At its due time: NAME is still inactive and was never seen up since its
        start, so its start job most likely waits (QUEUED_MAX_S): due again later."""
        if status is None or status.name in self._seen_up or status.active_state != "inactive":
            return False
        first = self._first.get(status.name)
        if first is None or now - first >= QUEUED_MAX_S:
            return False
        self._at[status.name] = now + UNSEEN_S
        return True

    async def next_due(self, clock: Callable[[], float]) -> list[str]:
        """Wait until some starts are due; their names, sorted."""
        while True:
            if not self._at:
                await self._wake.wait()
                self._wake.clear()
                continue
            wait = min(self._at.values()) - clock()
            if wait <= 0:
                now = clock()
                return sorted(n for n, at in self._at.items() if at <= now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
