"""FakeUnitManager: an in-memory systemd with the same contract as DbusUnitManager.

Models what the agent depends on:

- files: ``files`` (units dir) and ``links`` (runtime dir), both in memory;
- systemd's memory: ``units`` (status) and ``loaded`` (the contents systemd
  read). Like systemd, a unit is read from its link the first time it is
  referenced, and again on ``daemon_reload``; ``needs_reload(name)`` says
  whether the linked file differs from what systemd runs;
- start -> active/running, stop -> inactive/dead, each published on the
  change stream (filtered by ``watch_units``);
- ``forget_stopped=True``: a stopped unit is garbage-collected at once, as
  systemd does; stopping or unloading it afterwards is still a success;
- ``hang = True``: every systemd call waits ``call_timeout`` and raises
  SystemdError (files and ``loaded_files`` keep working, as on the real one);
- ``errors[op] = message``: calls of OP ("reload", "start", "stop",
  "statuses") raise SystemdError(message) while the entry is there;
- ``unloadable``: names whose file systemd refuses (load state bad-setting);
- ``calls``: every call made, in order, e.g. ``("start", "a.service")``.

- ``host_units``: units of the machine's own (name -> path), as
  ``add_host_unit`` creates them: systemd knows them (loaded, running) without
  fleet's link; ``outside_fleet`` reports them (a template counts for its
  instances); ``write_unit`` refuses a name
  whose host unit sits where fleet's link would go (``/run/systemd/system``),
  ``remove_unit`` and ``daemon_reload`` leave them alone.

Test helpers: ``set_state`` (a unit crashes, finishes...), ``forget``, ``add_host_unit``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from fleetpy.model.names import template_of
from fleetpy.systemd.base import (
    ChangeFeed,
    ChangeStream,
    SystemdError,
    UnitStatus,
    check_unit_name,
    content_hash,
)
from fleetpy.systemd.files import DEFAULT_LINK_DIR, ForeignUnitError

LINK_DIR = str(DEFAULT_LINK_DIR)


class FakeUnitManager:
    def __init__(self, *, forget_stopped: bool = False, call_timeout: float = 10.0) -> None:
        self.forget_stopped = forget_stopped
        self.call_timeout = call_timeout
        self.hang = False
        self.errors: dict[str, str] = {}
        self.unloadable: set[str] = set()  # names systemd refuses to load (bad-setting)
        self.calls: list[tuple[str, ...]] = []
        self.files: dict[str, str] = {}
        self.links: set[str] = set()
        self.units: dict[str, UnitStatus] = {}
        self.loaded: dict[str, str] = {}
        self.host_units: dict[str, str] = {}
        self.started = False
        self._watch: set[str] | None = None
        self._feed = ChangeFeed()

    # ---- life cycle
    async def start(self) -> None:
        """Start (again: a restarted fleetd on the same, still running, systemd)."""
        self.calls.append(("start_manager",))
        self.started = True
        if self._feed.closed:
            self._feed = ChangeFeed()

    async def close(self) -> None:
        self.calls.append(("close_manager",))
        self.started = False
        self._feed.close()

    # ---- unit files
    async def write_unit(self, name: str, contents: str) -> None:
        check_unit_name(name)
        self.calls.append(("write", name))
        if self.host_units.get(name) == f"{LINK_DIR}/{name}":
            raise ForeignUnitError(f"{LINK_DIR}/{name} exists and was not written by fleet")
        self.files[name] = contents
        self.links.add(name)

    async def remove_unit(self, name: str) -> None:
        check_unit_name(name)
        self.calls.append(("remove", name))
        self.files.pop(name, None)
        self.links.discard(name)

    def loaded_files(self) -> dict[str, str]:
        return {name: _hash(contents) for name, contents in self.files.items()}

    async def outside_fleet(self, names: Sequence[str]) -> dict[str, str]:
        self.calls.append(("outside_fleet", *names))
        found = {}
        for name in names:
            template = template_of(name)
            path = self.host_units.get(name) or self.host_units.get(template or "")
            if path is not None:
                found[name] = path
        return found

    # ---- systemd calls
    async def daemon_reload(self) -> None:
        await self._systemd("reload")
        for name in list(self.units):
            status = self.units[name]
            if name in self.links:
                self.loaded[name] = self.files[name]
                load = "bad-setting" if name in self.unloadable else "loaded"
                self._set(name, load, status.active_state, status.sub_state)
            elif name in self.host_units:
                continue
            elif status.active_state in ("inactive", "failed"):
                self._drop(name)
            else:  # still running, file gone: systemd keeps it as not-found
                self.loaded.pop(name, None)
                self._set(name, "not-found", status.active_state, status.sub_state)

    async def start_unit(self, name: str) -> None:
        await self._systemd("start", name)
        if self._lookup(name).load_state != "loaded":
            raise SystemdError(f"Unit {name} not found.")
        self._set(name, "loaded", "active", "running")

    async def stop_unit(self, name: str) -> None:
        await self._systemd("stop", name)
        status = self._lookup(name)
        if status.load_state != "loaded" and status.active_state == "inactive":
            self._drop(name)  # "Unit NAME not loaded.": a success for stop
            return
        self._set(name, status.load_state, "inactive", "dead")
        if self.forget_stopped:
            self._drop(name)

    async def statuses(self, names: Sequence[str]) -> dict[str, UnitStatus]:
        if not names:
            return {}
        await self._systemd("statuses", *names)
        return {name: self._lookup(name) for name in names}

    async def watch_units(self, names: set[str]) -> None:
        self._watch = set(names)

    def changes(self) -> ChangeStream:
        return self._feed.subscribe()

    # ---- test helpers
    def set_state(self, name: str, active_state: str, sub_state: str) -> None:
        """Simulate a state change systemd made on its own (a crash, an exit)."""
        status = self._lookup(name)
        self._set(name, status.load_state, active_state, sub_state)

    def add_host_unit(self, name: str, path: str, running: bool = True) -> None:
        """A unit of the machine's own at PATH (not fleet's), running or not."""
        self.host_units[name] = path
        active, sub = ("active", "running") if running else ("inactive", "dead")
        self.units[name] = UnitStatus(name, "loaded", active, sub)

    def forget(self, name: str) -> None:
        """Simulate systemd garbage-collecting an inactive unit."""
        self._drop(name)

    def needs_reload(self, name: str) -> bool:
        """True if the linked file differs from the contents systemd runs."""
        return (
            name in self.units and name in self.links and self.loaded.get(name) != self.files[name]
        )

    # ---- internals
    async def _systemd(self, op: str, *args: str) -> None:
        self.calls.append((op, *args))
        if self.hang:
            await asyncio.sleep(self.call_timeout)
            raise SystemdError(f"systemd {op} timed out after {self.call_timeout:g}s")
        if op in self.errors:
            raise SystemdError(self.errors[op])

    def _lookup(self, name: str) -> UnitStatus:
        """systemd's status of NAME (read from its link if not in memory)."""
        if name in self.units:
            return self.units[name]
        load = "loaded" if name in self.links else "not-found"
        if load == "loaded" and name in self.unloadable:
            load = "bad-setting"
        return UnitStatus(name, load, "inactive", "dead")

    def _set(self, name: str, load: str, active: str, sub: str) -> None:
        new = UnitStatus(name, load, active, sub)
        if name not in self.units and name in self.links:
            self.loaded[name] = self.files[name]  # systemd reads a unit when it first needs it
        if self.units.get(name) != new:
            self.units[name] = new
            if self._watch is None or name in self._watch:
                self._feed.publish(new)

    def _drop(self, name: str) -> None:
        self.units.pop(name, None)
        self.loaded.pop(name, None)


@functools.lru_cache(maxsize=4096)
def _hash(contents: str) -> str:
    """content_hash, remembered: the agent asks for every file on every pass and report
    (the real manager likewise hashes a file again only when it changed)."""
    return content_hash(contents)
