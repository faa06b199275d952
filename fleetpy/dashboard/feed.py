"""The dashboard's feed: one registry watch folded into a snapshot, its view to subscribers.

One resumable watch on the whole registry prefix (``Registry.watch("")``, as
the engine watches its parts) keeps a snapshot; after each update (a few
milliseconds gathered, so a burst of writes is one page update) the view is
rendered once (:func:`fleetpy.dashboard.model.view`) and every subscriber's
next ``await`` returns it: a slow browser skips intermediate views, it never
queues them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import Any

from fleetpy.dashboard.model import fold, placements_of, view
from fleetpy.registry.base import Registry, RegistryError

log = logging.getLogger("fleetpy.dashboard")

GATHER = 0.02  # seconds: updates arriving this close together make one view
RECENT = 50  # placements kept


class Feed:
    """The latest view (JSON text) and a version number that grows with each one."""

    def __init__(self, registry: Registry, this_machine: str) -> None:
        self._registry = registry
        self._this_machine = this_machine
        self._snapshot: dict[str, bytes] = {}
        self._placements: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT)
        self._changed = asyncio.Condition()
        self.version = 0
        self.text = ""
        self._synced = asyncio.Event()

    def render(self) -> str:
        return json.dumps(view(self._snapshot, list(self._placements), self._this_machine),
                          separators=(",", ":"))

    async def run(self) -> None:
        """Follow the registry until cancelled."""
        dirty = asyncio.Event()

        async def follow() -> None:
            while True:
                try:
                    async for update in self._registry.watch(""):
                        changes = fold(self._snapshot, update)
                        if not update.reset:
                            self._placements.extend(placements_of(changes, time.time()))
                        dirty.set()
                except RegistryError as exc:  # resumable_watch does not raise; a fake might
                    log.warning("dashboard watch failed, again in 1s: %s", exc)
                    await asyncio.sleep(1.0)

        follower = asyncio.create_task(follow(), name="dashboard-watch")
        try:
            while True:
                await dirty.wait()
                await asyncio.sleep(GATHER)
                dirty.clear()
                text = self.render()
                if text == self.text:
                    continue
                async with self._changed:
                    self.text, self.version = text, self.version + 1
                    self._synced.set()
                    self._changed.notify_all()
        finally:
            follower.cancel()

    async def next(self, seen: int) -> tuple[int, str]:
        """The first view newer than version ``seen`` (waits for it)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > seen)
            return self.version, self.text

    async def current(self) -> str:
        """The latest view, once the first listing is in."""
        await self._synced.wait()
        return self.text
