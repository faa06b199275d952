"""DbusUnitManager's worker plumbing without systemd: a worker started with --no-bus.

Timeouts, worker death and restart, close, frame dispatch. The D-Bus side is
covered by tests/lab/test_systemd_adapter.py on a real systemd.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fleetpy.systemd import DbusUnitManager, SystemdError, UnitStatus
from fleetpy.systemd.protocol import encode, split_frames

NO_BUS = [sys.executable, "-m", "fleetpy.systemd.worker", "--no-bus"]


def run(test: Callable[[DbusUnitManager], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        manager = DbusUnitManager(worker_argv=NO_BUS, **kwargs)
        await manager.start()
        try:
            await test(manager)
        finally:
            await manager.close()

    asyncio.run(main())


async def ticker(gaps: list[float], stop: asyncio.Event) -> None:
    """Tick every 10 ms, recording the real gap between ticks."""
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


async def in_flight(m: DbusUnitManager, count: int) -> None:
    """Until ``count`` calls were sent to the worker and await its answer."""
    async with asyncio.timeout(5):
        while len(m._pending) < count:
            await asyncio.sleep(0.01)


def test_ping_round_trip() -> None:
    async def t(m: DbusUnitManager) -> None:
        assert await m._call("ping") == "pong"
        results = await asyncio.gather(*(m._call("ping") for _ in range(50)))
        assert results == ["pong"] * 50

    run(t)


def test_unknown_request_is_a_systemd_error() -> None:
    async def t(m: DbusUnitManager) -> None:
        with pytest.raises(SystemdError, match="unknown request"):
            await m._call("nonsense")
        assert await m._call("ping") == "pong"

    run(t)


def test_hung_call_times_out_without_stalling_the_loop_and_worker_restarts() -> None:
    async def t(m: DbusUnitManager) -> None:
        gaps: list[float] = []
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(gaps, stop))
        began = time.monotonic()
        with pytest.raises(SystemdError, match=r"timed out after 1s"):
            await m.debug_hang(30)
        elapsed = time.monotonic() - began
        stop.set()
        await tick
        # The call timeout (1 s), not the hang (30 s): 2 s of margin for a noisy machine.
        assert 0.95 < elapsed < 3.0, elapsed
        # A loop blocked by the call would not tick for the timeout (1 s) or the hang;
        # a loaded 2-core machine delays a 10 ms tick by far less than 0.5 s.
        assert len(gaps) > 20 and max(gaps) < 0.5, (len(gaps), max(gaps, default=None))
        # the hung worker was killed and a new one answers
        assert await asyncio.wait_for(m._call("ping"), 5) == "pong"
        assert m.restarts == 1

    run(t, call_timeout=1.0)


def test_calls_in_flight_fail_when_the_worker_dies() -> None:
    async def t(m: DbusUnitManager) -> None:
        assert m._proc is not None
        pid = m._proc.pid
        hung = asyncio.create_task(m.debug_hang(30))
        queued = asyncio.create_task(m._call("ping"))
        await in_flight(m, 2)
        os.kill(pid, signal.SIGKILL)
        for task in (hung, queued):
            with pytest.raises(SystemdError, match="worker exited"):
                await asyncio.wait_for(task, 2)
        assert await asyncio.wait_for(m._call("ping"), 5) == "pong"
        assert m._proc.pid != pid

    run(t, call_timeout=5)


def test_close_ends_streams_and_kills_a_hung_worker() -> None:
    async def main() -> None:
        m = DbusUnitManager(worker_argv=NO_BUS, call_timeout=10)
        m.close_grace = 0.3
        await m.start()
        stream = m.changes()
        hung = asyncio.create_task(m.debug_hang(30))
        await in_flight(m, 1)
        proc = m._proc
        began = time.monotonic()
        await m.close()
        # close_grace (0.3 s) then a kill, not the call timeout (10 s) or the hang (30 s)
        assert time.monotonic() - began < 5
        assert proc is not None and proc.returncode is not None
        with pytest.raises(SystemdError):
            await hung
        assert [s async for s in stream] == []
        with pytest.raises(SystemdError):
            await m._call("ping")

    asyncio.run(main())


def test_close_lets_an_idle_worker_exit_on_eof() -> None:
    async def main() -> None:
        m = DbusUnitManager(worker_argv=NO_BUS)
        await m.start()
        proc = m._proc
        await m.close()
        assert proc is not None and proc.returncode == 0

    asyncio.run(main())


def test_start_fails_clearly_when_the_worker_cannot_connect() -> None:
    async def main() -> None:
        m = DbusUnitManager(
            bus_address=b"unix:path=/nonexistent/fleetpy-test.sock", call_timeout=1.0
        )
        with pytest.raises(SystemdError, match="not ready"):
            await m.start()
        with pytest.raises(SystemdError, match="no connection to systemd"):
            await m.statuses(["a.service"])
        await m.close()

    asyncio.run(main())


def test_change_frames_are_published_and_filtered() -> None:
    async def t(m: DbusUnitManager) -> None:
        stream = m.changes()
        m._dispatch({"ev": "changes", "units": [["a.service", "loaded", "active", "running"]]})
        await m.watch_units({"b.service"})
        m._dispatch(
            {
                "ev": "changes",
                "units": [
                    ["a.service", "loaded", "inactive", "dead"],
                    ["b.service", "loaded", "active", "running"],
                ],
            }
        )
        assert stream.pending() == 2
        got = [await anext(stream), await anext(stream)]
        assert got == [
            UnitStatus("a.service", "loaded", "active", "running"),
            UnitStatus("b.service", "loaded", "active", "running"),
        ]
        await stream.aclose()

    run(t)


def test_frames_split_across_reads() -> None:
    data = bytearray(encode({"id": 1, "ok": "x"}) + encode({"ev": "ready"}))
    partial = bytearray(data[:7])
    assert split_frames(partial) == []
    partial += data[7:]
    assert split_frames(partial) == [{"id": 1, "ok": "x"}, {"ev": "ready"}]
    assert partial == bytearray()
