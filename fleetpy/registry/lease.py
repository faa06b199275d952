"""A lease kept alive in the background: one refresh every ttl/3, no other traffic.

``renewed_at`` is when (event loop clock, monotonic) the last successful
refresh (or the grant) was sent (the first attempt since the previous
success: an answer may be to an earlier request): etcd keeps the lease at
least ttl seconds from then, which StopWhenDisconnected relies on
(fleetpy.agent.fencing).

The lease is reported lost only when etcd says so (a refresh answers TTL <= 0,
or a write names it and etcd no longer knows it) or when it is revoked. While
etcd cannot be reached the lease is still considered alive: etcd extends every
lease when a new leader takes over, so an outage does not by itself expire it.
"""

from __future__ import annotations

import asyncio
import logging
import random

from fleetpy.registry.base import RegistryError
from fleetpy.registry.kv import KVBackend

log = logging.getLogger(__name__)


class Backoff:
    """Exponential backoff with +-20% jitter: initial, 2x, 4x ... capped."""

    def __init__(self, initial: float = 0.2, cap: float = 3.0) -> None:
        self.initial = initial
        self.cap = cap
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)


class KeepaliveLease:
    """A granted lease with its keepalive task (implements ``base.Lease``)."""

    def __init__(
        self, backend: KVBackend, lease_id: int, ttl: int, sent: float | None = None
    ) -> None:
        self._backend = backend
        self._id = lease_id
        self._ttl = ttl
        # when the request that granted (or last refreshed) it was sent
        self._renewed_at = asyncio.get_running_loop().time() if sent is None else sent
        self._lost = asyncio.Event()
        self._kick = asyncio.Event()
        self.refreshes = 0
        """Successful refreshes so far (for tests and benchmarks)."""
        self._failures = 0
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._keepalive(), name=f"lease-{lease_id:x}-keepalive"
        )

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "lost"
        return f"<KeepaliveLease {self._id:x} ttl={self._ttl}s {state}>"

    @property
    def id(self) -> int:
        return self._id

    @property
    def ttl(self) -> int:
        return self._ttl

    def is_alive(self) -> bool:
        return not self._lost.is_set()

    @property
    def renewed_at(self) -> float:
        """Loop time at which the last successful refresh (or the grant) was sent."""
        return self._renewed_at

    @property
    def keepalive_failures(self) -> int:
        return self._failures

    async def wait_lost(self) -> None:
        await self._lost.wait()

    def check_now(self) -> None:
        """Refresh now instead of at the next tick (e.g. a write said the lease is gone)."""
        self._kick.set()

    async def revoke(self) -> None:
        """Revoke the lease: etcd deletes its keys at once.

        The lease counts as lost afterwards even if etcd could not be reached
        (RegistryError is raised then, and the lease expires after its ttl).
        """
        await self._stop_task()
        try:
            await self._backend.lease_revoke(self._id)
        finally:
            self._mark_lost("revoked", level=logging.INFO)

    async def stop_keepalive(self) -> None:
        """Stop refreshing without revoking, as if this process had died.

        The lease counts as lost from now on; etcd deletes its keys once its
        ttl runs out.
        """
        await self._stop_task()
        self._mark_lost("keepalive stopped, etcd expires it after its ttl", level=logging.INFO)

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _mark_lost(self, why: str, level: int = logging.WARNING) -> None:
        if not self._lost.is_set():
            log.log(level, "lease %x lost: %s", self._id, why)
            self._lost.set()

    async def _keepalive(self) -> None:
        interval = self._ttl / 3
        backoff = Backoff(initial=0.2, cap=max(0.2, min(1.0, interval)))
        delay = interval
        failing_since: float | None = None
        sent: float | None = None  # first attempt since the last success
        next_warning = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(delay):
                    await self._kick.wait()
            except TimeoutError:
                pass
            self._kick.clear()
            # An answer may be to a request sent by an earlier attempt (a timed out
            # refresh leaves its request in flight): count from the first attempt.
            if sent is None:
                sent = loop.time()
            try:
                remaining = await self._backend.lease_keepalive(self._id)
            except Exception as e:  # RegistryError; anything else is a bug, but keep trying
                if not isinstance(e, RegistryError):
                    log.exception("lease %x: unexpected error in keepalive", self._id)
                self._failures += 1
                delay = backoff.next()
                now = loop.time()
                if failing_since is None:
                    failing_since, next_warning = now, now + self._ttl
                    log.warning(
                        "lease %x: refresh failed (%s), retrying in %.1fs", self._id, e, delay
                    )
                elif now > next_warning:
                    next_warning = now + self._ttl
                    log.warning(
                        "lease %x: no refresh for %.0fs (%s); still retrying, it may have expired",
                        self._id,
                        now - failing_since,
                        e,
                    )
                continue
            if remaining <= 0:
                self._mark_lost("etcd no longer knows it (expired or revoked)")
                return
            self._renewed_at, sent = sent, None
            self.refreshes += 1
            backoff.reset()
            delay = interval
            if failing_since is not None:
                log.info("lease %x: refreshed again, %ds left", self._id, remaining)
                failing_since = None
                delay = 0  # again at once: this answer may be to an old request
