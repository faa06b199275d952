"""FakeUnitManager: the in-memory systemd the agent's unit tests run on."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import pytest

from fleetpy.systemd import FakeUnitManager, SystemdError, UnitManager, UnitStatus

UNIT = "[Service]\nExecStart=/bin/sleep 1000\n"


def run(test: Callable[[FakeUnitManager], Awaitable[None]], **kwargs: bool | float) -> None:
    async def main() -> None:
        fake = FakeUnitManager(**kwargs)  # type: ignore[arg-type]
        manager: UnitManager = fake  # the fake satisfies the protocol
        await manager.start()
        try:
            await test(fake)
        finally:
            await manager.close()

    asyncio.run(main())


def drain(stream: object) -> list[UnitStatus]:
    out = []
    queue = stream._queue  # type: ignore[attr-defined]
    while not queue.empty():
        item = queue.get_nowait()
        if item is not None:
            out.append(item)
    return out


def test_load_start_stop_unload_cycle() -> None:
    async def t(f: FakeUnitManager) -> None:
        stream = f.changes()
        await f.write_unit("a.service", UNIT)
        assert f.loaded_files() == {"a.service": hashlib.sha1(UNIT.encode()).hexdigest()}
        await f.daemon_reload()
        assert await f.statuses(["a.service"]) == {
            "a.service": UnitStatus("a.service", "loaded", "inactive", "dead")
        }
        await f.start_unit("a.service")
        assert await anext(stream) == UnitStatus("a.service", "loaded", "active", "running")
        await f.stop_unit("a.service")
        assert await anext(stream) == UnitStatus("a.service", "loaded", "inactive", "dead")
        await f.remove_unit("a.service")
        await f.daemon_reload()
        assert f.loaded_files() == {}
        assert (await f.statuses(["a.service"]))["a.service"].load_state == "not-found"
        assert [c[0] for c in f.calls] == [
            "start_manager",
            "write",
            "reload",
            "statuses",
            "start",
            "stop",
            "remove",
            "reload",
            "statuses",
        ]

    run(t)


def test_start_without_a_file_fails_like_systemd() -> None:
    async def t(f: FakeUnitManager) -> None:
        with pytest.raises(SystemdError, match="not found"):
            await f.start_unit("nope.service")

    run(t)


def test_stop_of_unknown_or_forgotten_unit_is_a_success() -> None:
    async def t(f: FakeUnitManager) -> None:
        await f.stop_unit("never.service")
        await f.write_unit("a.service", UNIT)
        await f.start_unit("a.service")
        await f.stop_unit("a.service")
        assert "a.service" not in f.units  # garbage-collected
        await f.stop_unit("a.service")
        await f.remove_unit("a.service")
        await f.stop_unit("a.service")

    run(t, forget_stopped=True)


def test_watch_filters_changes_and_set_state_simulates_a_crash() -> None:
    async def t(f: FakeUnitManager) -> None:
        stream = f.changes()
        await f.watch_units({"b.service"})
        for name in ("a.service", "b.service"):
            await f.write_unit(name, UNIT)
            await f.start_unit(name)
        f.set_state("b.service", "failed", "failed")
        assert drain(stream) == [
            UnitStatus("b.service", "loaded", "active", "running"),
            UnitStatus("b.service", "loaded", "failed", "failed"),
        ]

    run(t)


def test_hang_times_out_but_files_still_work() -> None:
    async def t(f: FakeUnitManager) -> None:
        f.hang = True
        await f.write_unit("a.service", UNIT)
        assert list(f.loaded_files()) == ["a.service"]
        with pytest.raises(SystemdError, match="timed out"):
            await f.start_unit("a.service")
        f.hang = False
        f.errors["stop"] = "Access denied"
        with pytest.raises(SystemdError, match="Access denied"):
            await f.stop_unit("a.service")

    run(t, call_timeout=0.05)


def test_changed_file_needs_reload_and_running_unit_survives_unlink() -> None:
    async def t(f: FakeUnitManager) -> None:
        await f.write_unit("a.service", UNIT)
        await f.start_unit("a.service")
        assert not f.needs_reload("a.service")
        await f.write_unit("a.service", UNIT + "# v2\n")
        assert f.needs_reload("a.service")
        await f.daemon_reload()
        assert not f.needs_reload("a.service")
        await f.remove_unit("a.service")
        await f.daemon_reload()
        assert f.units["a.service"] == UnitStatus("a.service", "not-found", "active", "running")

    run(t)


def test_close_ends_streams_and_touches_no_unit() -> None:
    async def main() -> None:
        f = FakeUnitManager()
        await f.start()
        await f.write_unit("a.service", UNIT)
        await f.start_unit("a.service")
        stream = f.changes()
        await f.close()
        assert [s async for s in stream] == []
        assert f.units["a.service"].active_state == "active"
        assert [s async for s in f.changes()] == []

    asyncio.run(main())


def test_unsafe_names_are_refused() -> None:
    async def t(f: FakeUnitManager) -> None:
        with pytest.raises(ValueError):
            await f.write_unit("../etc.service", UNIT)

    run(t)
