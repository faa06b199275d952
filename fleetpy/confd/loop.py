"""The watch + debounce loop of fleetpy-confd, and ``--onetime``.

One resumable watch per key a resource names (fleetpy.registry.watch: it lists,
then follows from the listing's revision, resumes after etcd restarts and
elections from the revision after the last event, re-lists after a
compaction). The etcd client's watches carry ``hasleader=true`` (etcd's
WithRequireLeader): a member cut off from its cluster cancels them instead of
leaving them silently stale, and the watch moves to a member that has a leader.

Nothing is rendered until every watch has listed its keys once. Then every
change below a resource's keys feeds its debounce; when it fires the resource
is rendered and applied (see apply.py). While etcd is unreachable the last
values stay and nothing is rendered: the files in place stay as they are.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from pathlib import Path

from fleetpy.confd import apply as applier
from fleetpy.confd.debounce import Debounce, Retry
from fleetpy.confd.render import RenderError, check_min_keys, render, select, under
from fleetpy.confd.resource import ConfdError, Resource, Wait
from fleetpy.registry.base import EventKind, RegistryError, WatchUpdate
from fleetpy.registry.kv import KVBackend, prefix_end
from fleetpy.registry.watch import resumable_watch

log = logging.getLogger("fleetpy.confd")


@dataclass
class Job:
    """One template resource and its state in the loop."""

    resource: Resource
    template: Path
    debounce: Debounce
    retry: Retry = field(default_factory=Retry)

    @property
    def name(self) -> str:
        return self.resource.name


def make_jobs(resources: list[tuple[Resource, Path]], default_wait: Wait) -> list[Job]:
    return [Job(r, t, Debounce(r.wait or default_wait)) for r, t in resources]


class Confd:
    def __init__(self, backend: KVBackend, jobs: list[Job], *, noop: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.jobs = jobs
        self.noop = noop
        self.clock = clock
        self.watched = sorted({k for job in jobs for k in job.resource.keys})
        self.items: dict[str, dict[str, bytes]] = {k: {} for k in self.watched}
        self.listed: set[str] = set()
        self.wake = asyncio.Event()
        self.stopping = False

    def merged(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for items in self.items.values():
            out.update(items)
        return out

    # one render ----------------------------------------------------------

    async def sync(self, job: Job) -> bool:
        """Render ``job`` and put it in place; False (logged) when it failed."""
        res = job.resource
        try:
            values = select(self.merged(), res)
            check_min_keys(values, res)
            source = job.template.read_text()
            content = render(source, values, str(job.template))
            applied = await applier.apply(res, content, noop=self.noop)
        except (RenderError, ConfdError, applier.ApplyError) as e:
            log.error("%s: not applied, %s stays as it is: %s", job.name, res.dest, e)
            return False
        except OSError as e:
            log.error("%s: not applied, %s stays as it is: template %s: %s", job.name,
                      res.dest, job.template, e.strerror or e)
            return False
        keys = f"{len(values)} key(s)"
        if applied.result is applier.Result.UNCHANGED:
            log.info("%s: %s unchanged (%s), no reload", job.name, res.dest, keys)
            return True
        if applied.result is applier.Result.WOULD_WRITE:
            log.warning("%s: noop: %s would change (%s; check passed), not written",
                        job.name, res.dest, keys)
            sys.stdout.write(applied.diff)
            sys.stdout.flush()
            return True
        log.info("%s: wrote %s (%s)", job.name, res.dest, keys)
        return await self.reload(job)

    async def reload(self, job: Job) -> bool:
        if not job.resource.reload_cmd:
            return True
        started = self.clock()
        try:
            await applier.reload(job.resource)
        except applier.ApplyError as e:
            delay = job.retry.failed(self.clock())
            log.error("%s: %s; trying the reload again in %.0fs (attempt %d failed)",
                      job.name, e, delay, job.retry.failures)
            return False
        if job.retry.failures:
            log.info("%s: reloaded after %d failed attempt(s)", job.name, job.retry.failures)
        else:
            log.info("%s: reloaded (%.2fs)", job.name, self.clock() - started)
        job.retry.succeeded()
        return True

    # --onetime -------------------------------------------------------------

    async def once(self) -> bool:
        """Read every key once, render every resource; True when all succeeded."""
        for key in self.watched:
            try:
                listing = await self.backend.range(key.encode(), prefix_end(key.encode()))
            except RegistryError as e:
                log.error("cannot read %s from etcd: %s; nothing rendered", key, e)
                return False
            self.items[key] = {kv.key.decode(errors="surrogateescape"): kv.value
                               for kv in listing.kvs}
        results = [await self.sync(job) for job in self.jobs]
        return all(results)

    # the loop ------------------------------------------------------------------

    def _apply_update(self, key: str, update: WatchUpdate) -> None:
        items = self.items[key]
        if update.reset:
            items.clear()
            items.update(update.items)
            touched = None
            if key not in self.listed:
                self.listed.add(key)
                log.info("watching %s: %d key(s) at revision %d", key, len(items),
                         update.revision)
        else:
            touched = []
            for event in update.events:
                if event.kind is EventKind.DELETE:
                    items.pop(event.key, None)
                else:
                    items[event.key] = event.value
                touched.append(event.key)
        if len(self.listed) < len(self.watched):
            return
        now = self.clock()
        for job in self.jobs:
            mine = touched is None or any(
                under(k, w) for k in touched for w in job.resource.keys)
            if mine and key in job.resource.keys:
                job.debounce.change(now)
        self.wake.set()

    async def _follow(self, key: str) -> None:
        watch = resumable_watch(self.backend, key.encode(), 0, closed=lambda: self.stopping)
        async with aclosing(watch) as updates:
            async for update in updates:
                self._apply_update(key, update)

    async def run(self) -> None:
        """Watch and render until ``stop()``."""
        followers = [asyncio.create_task(self._follow(k)) for k in self.watched]
        for task in followers:
            task.add_done_callback(lambda _task: self.wake.set())
        try:
            await self._loop(followers)
        finally:
            self.stopping = True
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def _loop(self, followers: list[asyncio.Task[None]]) -> None:
        first = True
        while not self.stopping:
            if len(self.listed) == len(self.watched):
                if first:
                    first = False
                    for job in self.jobs:
                        job.debounce.fired()
                        await self.sync(job)
                now = self.clock()
                for job in self.jobs:
                    if job.debounce.due(now):
                        job.debounce.fired()
                        await self.sync(job)
                    elif job.retry.due(now):
                        await self.reload(job)
            for task in followers:
                if task.done() and not self.stopping:
                    task.result()  # a watch ended: raise what ended it
                    raise RuntimeError("a watch ended")
            times = [t for job in self.jobs for t in (job.debounce.due_at(), job.retry.at)
                     if t is not None]
            timeout = None if not times else max(0.0, min(times) - self.clock())
            if self.stopping:  # stop() may have come during a render: do not clear it
                break
            self.wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
