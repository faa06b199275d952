"""Starts that have not settled yet: when a start counts as done.

A start is reported ``starting`` until the unit stayed up for SETTLE_S, or
sooner went up and then down (it failed at once), or reached active/exited
(a oneshot with RemainAfterExit); only then is it ``launched``. So a unit
whose process fails right after systemd called it active is never seen as
launched. The agent owns the clock; this holds the bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fleetpy.agent.plan import UP_STATES
from fleetpy.systemd.base import UnitStatus

SETTLE_S = 0.2  # a start is "launched" once the unit stayed up this long


class Settling:
    """The units whose start has not settled, and when each will."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}  # name -> when its start counts as settled
        self._seen_up: set[str] = set()  # of those, the ones systemd reported up since
        self._wake = asyncio.Event()

    def __contains__(self, name: object) -> bool:
        return name in self._at

    def started(self, name: str, now: float) -> None:
        self._at[name] = now + SETTLE_S
        self._seen_up.discard(name)
        self._wake.set()

    def settled(self, name: str) -> None:
        self._at.pop(name, None)
        self._seen_up.discard(name)

    def settles_now(self, status: UnitStatus) -> bool:
        """A settling unit that went up, then down (or reached active/exited)."""
        up = status.active_state in UP_STATES and status.sub_state != "auto-restart"
        if up and status.sub_state != "exited":
            self._seen_up.add(status.name)
            return False
        return (up and status.active_state == "active") or status.name in self._seen_up

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
