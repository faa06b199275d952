"""The UnitManager contract as one scenario, runnable on the fake or a real systemd.

Inside a lab host (the adapter runs inside fleetd, which runs inside a host):

    python tests/lab/systemd_driver.py contract [PREFIX [system-bus]]
    python tests/lab/systemd_driver.py reexec PREFIX
    python tests/lab/systemd_driver.py freeze PREFIX
    python tests/lab/systemd_driver.py bench ROUNDS

prints one JSON object; tests/lab/test_systemd_adapter.py asserts on it. The
same ``contract()`` runs in-process on FakeUnitManager.

Signal latency is measured against systemd's own clock: the time an item
reaches the stream minus the unit's ``ActiveEnterTimestampMonotonic`` (or
``InactiveEnterTimestampMonotonic``); both are CLOCK_MONOTONIC.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetpy.systemd import (
    ChangeStream,
    DbusUnitManager,
    FakeUnitManager,
    SystemdError,
    UnitManager,
    UnitStatus,
)

# Not fleetd's /run/fleet/units: a fleetd running in the host would unload
# unit files there that are not in its schedule. The links still go to
# /run/systemd/system, which is what makes systemd say linked-runtime.
UNITS_DIR = Path("/run/fleetpy-systemd-test/units")
UNIT = "[Unit]\nDescription=fleetpy systemd contract\n[Service]\nExecStart=/bin/sleep 100000\n"


class Ticker:
    """Ticks every 10 ms; the longest gap is how long the event loop was stalled."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now

    def stop(self) -> None:
        self._task.cancel()


async def wait_for_state(
    stream: ChangeStream, name: str, active: str, sub: str, timeout: float = 5.0
) -> tuple[float, list[list[str]]]:
    """(monotonic time the matching item arrived, every item of NAME seen until then)."""
    seen: list[list[str]] = []
    async with asyncio.timeout(timeout):
        async for status in stream:
            if status.name != name:
                continue
            seen.append([status.load_state, status.active_state, status.sub_state])
            if (status.active_state, status.sub_state) == (active, sub):
                return time.monotonic(), seen
    raise AssertionError("stream ended")


def systemd_time(name: str, prop: str) -> float | None:
    """A unit's *TimestampMonotonic property in seconds (real systemd only)."""
    out = subprocess.run(
        ["systemctl", "show", "-p", prop, "--value", name], capture_output=True, text=True
    ).stdout.strip()
    return int(out) / 1e6 if out.isdigit() and int(out) > 0 else None


def systemctl(*args: str) -> str:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True).stdout


def as_dict(statuses: dict[str, UnitStatus]) -> dict[str, list[str]]:
    return {n: [s.load_state, s.active_state, s.sub_state] for n, s in statuses.items()}


async def hang(manager: UnitManager, seconds: float) -> None:
    """Make the next call hang (the real worker sleeps; the fake waits its timeout)."""
    if isinstance(manager, FakeUnitManager):
        manager.hang = True
        try:
            await manager.statuses(["x.service"])
        finally:
            manager.hang = False
    else:
        assert isinstance(manager, DbusUnitManager)
        await manager.debug_hang(seconds)


async def contract(make: Callable[[], UnitManager], prefix: str, real: bool) -> dict[str, Any]:
    r: dict[str, Any] = {}
    ticker = Ticker()
    name, gone, never = f"{prefix}-a.service", f"{prefix}-gone.service", f"{prefix}-never.service"
    m = make()
    await m.start()
    stream = m.changes()
    await m.watch_units({name, gone})

    await m.write_unit(name, UNIT)
    r["files"] = m.loaded_files()
    await m.daemon_reload()
    r["after_reload"] = as_dict(await m.statuses([name]))
    if real:
        r["unit_file_state"] = systemctl("show", "-p", "UnitFileState", "--value", name).strip()
        r["status_text"] = systemctl("status", "--no-pager", name)

    began = time.monotonic()
    await m.start_unit(name)
    r["start_call_s"] = time.monotonic() - began
    arrived, r["start_changes"] = await wait_for_state(stream, name, "active", "running")
    if real:
        entered = systemd_time(name, "ActiveEnterTimestampMonotonic")
        r["start_latency_s"] = None if entered is None else arrived - entered
    r["running"] = as_dict(await m.statuses([name, never]))

    # a fleetd restart: close and reconnect; the unit keeps running
    await stream.aclose()
    await m.close()
    r["closed_stream_ends"] = [s async for s in m.changes()] == []
    m = make()
    await m.start()
    stream = m.changes()
    await m.watch_units({name, gone})
    r["after_restart"] = as_dict(await m.statuses([name]))
    r["files_after_restart"] = m.loaded_files()

    await m.stop_unit(name)
    queued = time.monotonic()
    arrived, r["stop_changes"] = await wait_for_state(stream, name, "inactive", "dead")
    r["stop_after_call_s"] = arrived - queued  # systemd forgets a stopped unit's timestamps

    # a unit systemd has forgotten: started, stopped, file removed, reloaded
    await m.write_unit(gone, UNIT)
    await m.daemon_reload()
    await m.start_unit(gone)
    await wait_for_state(stream, gone, "active", "running")
    await m.stop_unit(gone)
    await wait_for_state(stream, gone, "inactive", "dead")
    await m.remove_unit(gone)
    await m.daemon_reload()
    r["gone_status"] = as_dict(await m.statuses([gone]))
    r["stop_errors"] = []
    for unit in (gone, never):
        try:
            await m.stop_unit(unit)
        except SystemdError as exc:
            r["stop_errors"].append(f"{unit}: {exc}")
    try:
        await m.start_unit(never)
        r["start_never"] = "no error"
    except SystemdError as exc:
        r["start_never"] = f"SystemdError: {exc}"

    await m.remove_unit(name)
    await m.remove_unit(name)  # twice: missing is fine
    await m.daemon_reload()
    r["files_after_remove"] = m.loaded_files()
    r["removed_status"] = as_dict(await m.statuses([name]))

    # a hung call: times out, the loop keeps ticking, the manager recovers
    await m.write_unit(name, UNIT)
    await m.daemon_reload()
    await m.start_unit(name)
    await wait_for_state(stream, name, "active", "running")
    ticker.max_gap = 0.0
    ticks = ticker.ticks
    began = time.monotonic()
    try:
        await hang(m, 60)
        r["hang"] = "no error"
    except SystemdError as exc:
        r["hang"] = str(exc)
    r["hang_s"] = time.monotonic() - began
    r["hang_ticks"] = ticker.ticks - ticks
    r["hang_max_gap_s"] = ticker.max_gap
    r["after_hang"] = as_dict(await m.statuses([name]))
    if real:  # the restarted worker re-emits the watched units' status
        _, r["resync_changes"] = await wait_for_state(stream, name, "active", "running")
    await m.stop_unit(name)
    await wait_for_state(stream, name, "inactive", "dead")
    await m.remove_unit(name)
    await m.daemon_reload()

    await m.close()
    ticker.stop()
    return r


async def reexec(prefix: str) -> dict[str, Any]:
    """systemctl daemon-reexec drops the connection: the worker is restarted, the
    watched unit's state re-emitted, and the unit keeps running."""
    r: dict[str, Any] = {}
    m = DbusUnitManager(units_dir=UNITS_DIR, call_timeout=5.0)
    await m.start()
    name = f"{prefix}-reexec.service"
    stream = m.changes()
    await m.watch_units({name})
    await m.write_unit(name, UNIT)
    await m.daemon_reload()
    await m.start_unit(name)
    await wait_for_state(stream, name, "active", "running")
    main_pid = systemctl("show", "-p", "MainPID", "--value", name).strip()
    proc = await asyncio.create_subprocess_exec("systemctl", "daemon-reexec")
    await proc.wait()
    r["resync"] = (await wait_for_state(stream, name, "active", "running"))[1]
    r["restarts"] = m.restarts
    r["status"] = as_dict(await m.statuses([name]))
    r["same_pid"] = systemctl("show", "-p", "MainPID", "--value", name).strip() == main_pid
    await m.stop_unit(name)
    r["stopped"] = (await wait_for_state(stream, name, "inactive", "dead"))[1][-1]
    await m.remove_unit(name)
    await m.daemon_reload()
    await m.close()
    return r


async def freeze(prefix: str) -> dict[str, Any]:
    """Prints "ready" then expects its host's systemd to be SIGSTOPped for a few
    seconds: calls time out without stalling the loop; after SIGCONT they work."""
    r: dict[str, Any] = {}
    m = DbusUnitManager(units_dir=UNITS_DIR, call_timeout=1.0)
    await m.start()
    name = f"{prefix}-freeze.service"
    await m.write_unit(name, UNIT)
    await m.daemon_reload()
    print("ready", flush=True)
    await asyncio.sleep(0.5)  # the test stops systemd now
    ticker = Ticker()
    began = time.monotonic()
    r["errors"] = []
    while True:
        try:
            r["status"] = as_dict(await m.statuses([name]))
            break
        except SystemdError as exc:
            r["errors"].append(str(exc))
        if time.monotonic() - began > 30:
            break
    r["recovered_after_s"] = time.monotonic() - began
    r["max_gap_s"] = ticker.max_gap
    r["restarts"] = m.restarts
    ticker.stop()
    await m.remove_unit(name)
    await m.daemon_reload()
    await m.close()
    return r


async def bench(rounds: int, prefix: str) -> dict[str, Any]:
    """Signal latency over ROUNDS start/stop cycles of one unit.

    start: item arrival - systemd's ActiveEnterTimestampMonotonic (the signal's own
    latency); stop: item arrival - StopUnit's return (systemd forgets a stopped
    unit's timestamps), so it includes the time the unit takes to die.
    """
    m = DbusUnitManager(units_dir=UNITS_DIR)
    await m.start()
    name = f"{prefix}-bench.service"
    stream = m.changes()
    await m.watch_units({name})
    await m.write_unit(name, UNIT)
    await m.daemon_reload()
    starts: list[float] = []
    stops: list[float] = []
    calls: list[float] = []
    for _ in range(rounds):
        began = time.monotonic()
        await m.start_unit(name)
        calls.append(time.monotonic() - began)
        arrived, _ = await wait_for_state(stream, name, "active", "running")
        entered = systemd_time(name, "ActiveEnterTimestampMonotonic")
        if entered is not None:
            starts.append(arrived - entered)
        await m.stop_unit(name)
        queued = time.monotonic()
        arrived, _ = await wait_for_state(stream, name, "inactive", "dead")
        stops.append(arrived - queued)
    await m.remove_unit(name)
    burst = await start_burst(m, stream, [f"{prefix}-burst{i}.service" for i in range(100)])
    await m.close()
    return {"start": starts, "stop": stops, "start_call": calls} | burst


async def start_burst(m: UnitManager, stream: ChangeStream, names: list[str]) -> dict[str, Any]:
    """Start NAMES at once; per-unit signal latency and the whole burst's duration."""
    await m.watch_units(set(names))
    for name in names:
        await m.write_unit(name, UNIT)
    await m.daemon_reload()
    arrived: dict[str, float] = {}

    async def collect() -> None:  # concurrently: an item's time is when it arrives
        async for status in stream:
            if status.active_state == "active" and status.name in names:
                arrived[status.name] = time.monotonic()
                if len(arrived) == len(names):
                    return

    collector = asyncio.create_task(collect())
    began = time.monotonic()
    await asyncio.gather(*(m.start_unit(name) for name in names))
    await asyncio.wait_for(collector, 30)
    done = time.monotonic()
    began_status = time.monotonic()
    await m.statuses(names)
    statuses_s = time.monotonic() - began_status
    latencies = []
    for name in names:
        entered = systemd_time(name, "ActiveEnterTimestampMonotonic")
        if entered is not None:
            latencies.append(arrived[name] - entered)
    for name in names:
        await m.stop_unit(name)
        await m.remove_unit(name)
    await m.daemon_reload()
    return {"burst_latency": latencies, "burst_s": done - began, "statuses_100_s": statuses_s}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    mode = sys.argv[1]
    if mode == "contract":
        prefix = sys.argv[2] if len(sys.argv) > 2 else "fleetpy-contract"
        bus: dict[str, Any] = {}
        if len(sys.argv) > 3 and sys.argv[3] == "system-bus":  # via dbus-daemon
            bus = {"bus_address": b"unix:path=/run/dbus/system_bus_socket", "bus_client": True}
        result = asyncio.run(
            contract(
                lambda: DbusUnitManager(units_dir=UNITS_DIR, call_timeout=2.0, **bus),
                prefix,
                real=True,
            )
        )
    elif mode == "reexec":
        result = asyncio.run(reexec(sys.argv[2]))
    elif mode == "freeze":
        result = asyncio.run(freeze(sys.argv[2]))
    elif mode == "bench":
        result = asyncio.run(bench(int(sys.argv[2]), "fleetpy-bench"))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
