"""The dashboard's feed: one registry watch folded into a snapshot, views and patches.

One resumable watch on the whole registry prefix (``Registry.watch("")``, as
the engine watches its parts) keeps a snapshot. Changes are coalesced
(:class:`Coalescer`: the first after a quiet spell is shown 20 ms later, then
at most 4 views a second however fast the registry changes); each time the
view is rendered once (:func:`fleetpy.dashboard.model.view`) and compared with
the last (:func:`fleetpy.dashboard.patch.diff`). A page gets the whole view on
connecting, then the patches; one that fell more than ``HISTORY`` patches
behind gets the whole view again: a slow browser skips work, it never queues it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import Any

from fleetpy.dashboard.model import Memo, fold, placements_of, view
from fleetpy.dashboard.patch import diff
from fleetpy.model.types import Machine
from fleetpy.registry.base import Registry, RegistryError
from fleetpy.registry.codec import MACHINES, CodecError, decode_machine

log = logging.getLogger("fleetpy.dashboard")

GATHER = 0.02  # seconds: updates arriving this close together make one view
INTERVAL = 0.25  # seconds: the least between two views (at most 4 a second)
RECENT = 50  # placements kept
HISTORY = 32  # patches kept for pages a few views behind


class Coalescer:
    """When to render the next view (pure: the caller passes the clock).

    A change is shown ``gather`` after it when the page is up to date and no
    sooner than ``interval`` after the previous view: within
    ``max(gather, interval)`` of any change, at most ``1/interval`` views a second.
    """

    def __init__(self, gather: float = GATHER, interval: float = INTERVAL) -> None:
        self.gather, self.interval = gather, interval
        self._pending: float | None = None  # when the oldest unshown change came
        self._last = float("-inf")  # when the last view was rendered

    def changed(self, now: float) -> None:
        if self._pending is None:
            self._pending = now

    def due(self) -> float | None:
        """When to render (a clock value), None when nothing changed since the last view."""
        if self._pending is None:
            return None
        return max(self._pending + self.gather, self._last + self.interval)

    def rendered(self, now: float) -> None:
        self._pending, self._last = None, now


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Feed:
    """The latest view, its version (grows with each change) and the recent patches."""

    def __init__(self, registry: Registry, this_machine: str) -> None:
        self._registry = registry
        self._this_machine = this_machine
        self._snapshot: dict[str, bytes] = {}
        self._placements: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT)
        self._changed = asyncio.Condition()
        self.version = 0
        self.view: dict[str, Any] = {}
        self._text = (0, "")
        self._patches: collections.deque[tuple[int, str]] = collections.deque(maxlen=HISTORY)
        self._synced = asyncio.Event()
        self._memo: Memo = {}

    def render(self) -> dict[str, Any]:
        return view(self._snapshot, list(self._placements), self._this_machine, self._memo)

    @property
    def text(self) -> str:
        """The whole current view as JSON (rendered once per version, when asked for)."""
        if self._text[0] != self.version:
            self._text = (self.version, _dumps(self.view))
        return self._text[1]

    def machine(self, machine_id: str) -> Machine | None:
        """The machine's record as the watch last saw it (None: not registered)."""
        value = self._snapshot.get(MACHINES + machine_id)
        if value is None:
            return None
        try:
            return decode_machine(MACHINES + machine_id, value)
        except (CodecError, ValueError):
            return None

    async def run(self) -> None:
        """Follow the registry until cancelled."""
        dirty = asyncio.Event()
        loop = asyncio.get_running_loop()
        pace = Coalescer()

        async def follow() -> None:
            while True:
                try:
                    async for update in self._registry.watch(""):
                        changes = fold(self._snapshot, update)
                        if not update.reset:
                            self._placements.extend(placements_of(changes, time.time()))
                        pace.changed(loop.time())
                        dirty.set()
                except RegistryError as exc:  # resumable_watch does not raise; a fake might
                    log.warning("dashboard watch failed, again in 1s: %s", exc)
                    await asyncio.sleep(1.0)

        follower = asyncio.create_task(follow(), name="dashboard-watch")
        try:
            while True:
                await dirty.wait()
                due = pace.due()
                if due is not None and due > loop.time():
                    await asyncio.sleep(due - loop.time())
                dirty.clear()
                pace.rendered(loop.time())
                new = self.render()
                patch = diff(self.view, new)
                if not patch and self._synced.is_set():
                    continue
                async with self._changed:
                    self.view, self.version = new, self.version + 1
                    self._patches.append((self.version, _dumps(patch)))
                    self._synced.set()
                    self._changed.notify_all()
        finally:
            follower.cancel()

    async def next(self, seen: int) -> tuple[int, str, list[str]]:
        """What a page at version ``seen`` needs to be current (waits for a newer one):
        ``("patch", [patch, ...])`` in order, or ``("view", [whole view])`` when it has
        none yet (``seen`` 0) or missed patches no longer kept."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > seen)
            patches = [text for version, text in self._patches if version > seen]
            if seen and len(patches) == self.version - seen:
                return self.version, "patch", patches
            return self.version, "view", [self.text]

    async def current(self) -> str:
        """The latest view, once the first listing is in."""
        await self._synced.wait()
        return self.text
