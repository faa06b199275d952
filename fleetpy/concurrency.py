"""Run many awaitables, a few at a time (pure asyncio, no I/O of its own)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def each(parts: Iterable[T], call: Callable[[T], Awaitable[R]], limit: int) -> list[R]:
    """``call`` on every part, at most ``limit`` at once; the results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(part: T) -> R:
        async with gate:
            return await call(part)

    return list(await asyncio.gather(*(one(p) for p in parts)))
