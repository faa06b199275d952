"""A watch that survives etcd restarts, leader changes and compactions.

It lists the prefix once (a reset), then follows one watch stream from the
listing's revision + 1. When the stream breaks it opens a new one from the
revision after the last event it delivered, with backoff, on whichever endpoint
answers; no event is lost or repeated. When that revision has been compacted
meanwhile, it lists the prefix again and delivers a new reset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from fleetpy.registry.base import Event, EventKind, RegistryError, WatchUpdate
from fleetpy.registry.kv import EventType, KVBackend, KVEvent, prefix_end
from fleetpy.registry.lease import Backoff

log = logging.getLogger(__name__)

REPEAT_WARNING = 60.0  # while a watch keeps failing: one warning a minute, not one a retry


class _Outage:
    """One warning when a watch starts failing, one a minute while it lasts, one
    line when it is back: not a line per retry (about one a second per watch)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.since: float | None = None
        self.attempts = 0
        self.next_warning = 0.0

    def failed(self, error: RegistryError, action: str, delay: float) -> None:
        now = time.monotonic()
        self.attempts += 1
        if self.since is None:
            self.since, self.next_warning = now, now + REPEAT_WARNING
            log.warning("watch %s: %s; %s in %.1fs (retrying quietly while it fails)",
                        self.label, error, action, delay)
        elif now >= self.next_warning:
            self.next_warning = now + REPEAT_WARNING
            log.warning("watch %s: still failing after %.0fs (%d attempts): %s",
                        self.label, now - self.since, self.attempts, error)
        else:
            log.debug("watch %s: %s; %s in %.1fs", self.label, error, action, delay)

    def ok(self) -> None:
        if self.since is not None:
            log.info("watch %s: back after %.1fs (%d failed attempts)", self.label,
                     time.monotonic() - self.since, self.attempts)
            self.since, self.attempts = None, 0


async def resumable_watch(
    backend: KVBackend,
    prefix: bytes,
    strip: int,
    *,
    closed: Callable[[], bool],
    backoff: Backoff | None = None,
) -> AsyncGenerator[WatchUpdate, None]:
    """Yield a reset, then changes of every key starting with ``prefix``.

    Keys in updates are decoded and have their first ``strip`` characters
    removed (the registry prefix). Ends when ``closed()`` becomes true; never
    raises RegistryError.
    """
    label = prefix.decode(errors="replace")
    end = prefix_end(prefix)
    backoff = backoff or Backoff()
    outage = _Outage(label)
    next_revision = 0  # 0: the next step is a (re-)listing

    def rel(key: bytes) -> str:
        return key.decode(errors="surrogateescape")[strip:]

    while not closed():
        if next_revision == 0:
            try:
                listing = await backend.range(prefix, end)
            except RegistryError as e:
                if closed():
                    return
                delay = backoff.next()
                outage.failed(e, "listing again", delay)
                await asyncio.sleep(delay)
                continue
            outage.ok()
            next_revision = listing.revision + 1
            items = {rel(kv.key): kv.value for kv in listing.kvs}
            revisions = {rel(kv.key): kv.mod_revision for kv in listing.kvs}
            yield WatchUpdate(
                revision=listing.revision, reset=True, items=items, revisions=revisions
            )
            continue
        try:
            async with aclosing(backend.watch(prefix, end, next_revision)) as stream:
                async for batch in stream:
                    if batch.compact_revision:
                        log.info(
                            "watch %s: revision %d is compacted (etcd keeps %d on), listing again",
                            label,
                            next_revision,
                            batch.compact_revision,
                        )
                        next_revision = 0
                        break
                    if batch.created:
                        backoff.reset()
                        outage.ok()
                    if batch.progress:
                        next_revision = max(next_revision, batch.progress + 1)
                    if not batch.events:
                        continue
                    events = [_event(e, rel) for e in batch.events]
                    next_revision = events[-1].revision + 1
                    yield WatchUpdate(revision=events[-1].revision, events=events)
                else:
                    if not closed():
                        raise RegistryError("watch stream ended")
        except RegistryError as e:
            if closed():
                return
            delay = backoff.next()
            outage.failed(e, f"resuming from revision {next_revision}", delay)
            await asyncio.sleep(delay)


def _event(event: KVEvent, rel: Callable[[bytes], str]) -> Event:
    kind = EventKind.DELETE if event.type is EventType.DELETE else EventKind.PUT
    return Event(
        kind=kind, key=rel(event.kv.key), value=event.kv.value, revision=event.kv.mod_revision
    )
