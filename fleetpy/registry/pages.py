"""Listings read in pages: what ``fleetctl list-units`` of 10,000 rows needs.

A page is one range request of at most ``page_size`` keys; the next one starts
after the last key seen, and is asked for while the consumer uses the current
one. Every page after the first is read at the first
one's revision, so the pages together are one consistent listing (as one big
range would be) while neither etcd, the API server nor fleetctl holds all of
it at once. Should that revision be compacted while the pages are read (etcd
keeps old revisions until a compaction), the listing fails with a
RegistryError saying so; run it again. Called by KVRegistry
(fleetpy.registry.machine_store).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, TypeVar

from fleetpy.model.types import Machine, UnitState
from fleetpy.registry import codec
from fleetpy.registry.base import RegistryError
from fleetpy.registry.kv import KeyValue, RangeResult, prefix_end

if TYPE_CHECKING:
    from fleetpy.registry.kvbase import KVBase

DEFAULT_PAGE = 1000
T = TypeVar("T")


async def kv_pages(
    registry: KVBase, relative_prefix: str, page_size: int = DEFAULT_PAGE
) -> AsyncGenerator[list[KeyValue], None]:
    """The entries under ``relative_prefix`` in key order, ``page_size`` at a time."""
    if page_size < 1:
        raise ValueError(f"page size must be at least 1, not {page_size}")
    start = registry._key(relative_prefix)
    end = prefix_end(start)
    revision = 0

    async def page(first: bytes) -> RangeResult:
        try:
            return await registry.backend.range(first, end, limit=page_size, revision=revision)
        except RegistryError as e:
            if revision:
                raise RegistryError(
                    f"listing {registry.prefix}{relative_prefix} at revision "
                    f"{revision} failed part way ({e}); run it again"
                ) from None
            raise

    result = await page(start)
    revision = result.revision
    ahead: asyncio.Task[RangeResult] | None = None
    try:
        while True:
            if result.more and result.kvs:  # ask for the next page while this one is used
                ahead = asyncio.ensure_future(page(result.kvs[-1].key + b"\0"))
            if result.kvs:
                yield list(result.kvs)
            if ahead is None:
                return
            result, ahead = await ahead, None
    finally:
        if ahead is not None:
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, RegistryError):
                await ahead


async def _decoded_pages(
    registry: KVBase,
    relative_prefix: str,
    page_size: int,
    decode: Callable[[KeyValue], T],
) -> AsyncGenerator[list[T], None]:
    async with contextlib.aclosing(kv_pages(registry, relative_prefix, page_size)) as pages:
        async for kvs in pages:
            page = registry._decoded(kvs, decode)
            if page:
                yield page


def unit_state_pages(
    registry: KVBase, machine_id: str | None, page_size: int
) -> AsyncGenerator[list[UnitState], None]:
    """Reported unit states, by machine then unit name, in pages."""
    return _decoded_pages(
        registry,
        codec.states_prefix(machine_id),
        page_size,
        lambda kv: codec.decode_state(registry._rel(kv.key), kv.value),
    )


def machine_pages(registry: KVBase, page_size: int) -> AsyncGenerator[list[Machine], None]:
    """Live machines, by ID, in pages."""
    return _decoded_pages(
        registry,
        codec.MACHINES,
        page_size,
        lambda kv: codec.decode_machine(registry._rel(kv.key), kv.value),
    )
