"""A watch that keeps failing says so once (and once a minute), not once a retry."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from fleetpy.model.types import TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.memory import MemoryRegistry

pytestmark = pytest.mark.timeout(20)


async def test_an_outage_is_one_warning_and_one_line_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="fleetpy.registry.watch")
    registry = MemoryRegistry()
    seen: list[int] = []

    async def follow() -> None:
        async for update in registry.watch("units/"):
            seen.append(update.revision)

    task = asyncio.create_task(follow())
    try:
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.01)
        registry.set_available(False)

        def retries() -> int:
            return sum(1 for r in caplog.records if r.levelno == logging.DEBUG
                       and "units/" in r.getMessage())

        async with asyncio.timeout(10):
            while retries() < 3:  # the watch tried again and again
                await asyncio.sleep(0.05)
        registry.set_available(True)
        await registry.create_unit(make_unit_file("a.service", "[Service]\nExecStart=/bin/true\n"),
                                   TargetState.LAUNCHED)
        async with asyncio.timeout(10):
            while not any("back after" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "retrying quietly" in warnings[0]
    back = [r.getMessage() for r in caplog.records if "back after" in r.getMessage()]
    assert len(back) == 1 and "failed attempts" in back[0]
