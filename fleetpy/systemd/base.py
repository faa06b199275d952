"""The systemd contract: what the agent asks of systemd, as an async interface.

A :class:`UnitManager` owns three things on one machine:

- unit files: ``/run/fleet/units/NAME`` (the copy fleet loaded) linked into
  ``/run/systemd/system/NAME`` so that systemd shows ``linked-runtime``; both
  live on /run, so they survive a fleetd restart but not a reboot;
- systemd calls: daemon-reload, start, stop, status (ListUnitsByNames);
- a stream of unit state changes taken from systemd's D-Bus signals (no polling).

Rules every implementation keeps:

- ``start()``/``close()`` never start, stop or restart a unit: a fleetd restart
  must leave healthy units alone.
- ``write_unit``/``remove_unit`` never replace or remove a file or link fleet
  did not write (``outside_fleet`` says which names have one);
- ``stop_unit`` of a unit systemd does not know (never loaded, or stopped and
  garbage-collected: "Unit X not loaded.", NoSuchUnit) is a success.
- every systemd call fails with :class:`SystemdError` after a timeout instead of
  blocking the caller's event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from fleetpy.model.names import is_valid, quote


class SystemdError(Exception):
    """A systemd call failed, timed out, or systemd could not be reached."""


@dataclass(frozen=True, slots=True)
class UnitStatus:
    """systemd's view of one unit (as in ``systemctl list-units``)."""

    name: str
    load_state: str  # loaded, not-found, bad-setting, error, masked, ...
    active_state: str  # active, reloading, inactive, failed, activating, deactivating
    sub_state: str  # running, dead, exited, failed, start, ...


class UnitManager(Protocol):
    """The agent's hands on systemd. All paths are fixed at construction."""

    async def start(self) -> None:
        """Connect to systemd (start the worker). Touches no unit."""

    async def close(self) -> None:
        """Disconnect; end every :meth:`changes` stream. Touches no unit."""

    async def write_unit(self, name: str, contents: str) -> None:
        """Write the unit file atomically and link it into systemd's runtime dir."""

    async def remove_unit(self, name: str) -> None:
        """Remove the link and the file; either being absent already is fine."""

    def loaded_files(self) -> dict[str, str]:
        """Name -> sha1 hex of the contents of every unit file fleet has written."""

    async def outside_fleet(self, names: Sequence[str]) -> dict[str, str]:
        """Name -> where a unit of that name exists on this machine outside fleet.

        Where: the path of a file or link in systemd's unit search path that is
        not fleet's own link (an instance's template counts), or, for a unit
        systemd knows with a load state other than not-found and no such file,
        its fragment path or a description of its state. Names fleet alone
        has are left out. Touches nothing.
        """

    async def daemon_reload(self) -> None:
        """systemctl daemon-reload."""

    async def start_unit(self, name: str) -> None:
        """StartUnit(name, "replace"); returns once the job is queued."""

    async def stop_unit(self, name: str) -> None:
        """StopUnit(name, "replace"); a unit systemd does not know is a success."""

    async def statuses(self, names: Sequence[str]) -> dict[str, UnitStatus]:
        """Current status of each named unit (one ListUnitsByNames call)."""

    async def watch_units(self, names: set[str]) -> None:
        """Limit :meth:`changes` to these units (replaces the previous set)."""

    def changes(self) -> ChangeStream:
        """A new stream of unit state changes, registered immediately."""


class ChangeStream:
    """One subscriber's stream of :class:`UnitStatus` changes.

    Registered when created (no change published after that is missed), ended
    by :meth:`aclose` or when the manager closes. Unbounded: a consumer that
    stops reading without closing keeps its changes in memory.
    """

    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed
        self._queue: asyncio.Queue[UnitStatus | None] = asyncio.Queue()
        self._closed = False

    def __aiter__(self) -> AsyncIterator[UnitStatus]:
        return self

    async def __anext__(self) -> UnitStatus:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self._closed = True
            raise StopAsyncIteration
        return item

    def pending(self) -> int:
        """How many changes are queued and not yet read."""
        return self._queue.qsize()

    async def aclose(self) -> None:
        self._feed.unsubscribe(self)
        self._end()

    def _put(self, status: UnitStatus) -> None:
        if not self._closed:
            self._queue.put_nowait(status)

    def _end(self) -> None:
        self._queue.put_nowait(None)


class ChangeFeed:
    """Fan-out of unit changes to every open :class:`ChangeStream`."""

    def __init__(self) -> None:
        self._streams: set[ChangeStream] = set()
        self.closed = False

    def subscribe(self) -> ChangeStream:
        stream = ChangeStream(self)
        if self.closed:
            stream._end()
        else:
            self._streams.add(stream)
        return stream

    def unsubscribe(self, stream: ChangeStream) -> None:
        self._streams.discard(stream)

    def publish(self, status: UnitStatus) -> None:
        for stream in self._streams:
            stream._put(status)

    def close(self) -> None:
        self.closed = True
        for stream in self._streams:
            stream._end()
        self._streams.clear()


def check_unit_name(name: str) -> None:
    """Last line of defence before a name becomes a path: ValueError unless ``name`` is
    a valid unit name (fleetpy.model.names: at most 255 bytes, no ``/``, only
    systemd's characters) that is not hidden (``.``, ``..``, ``.x.service``)."""
    problem = None if is_valid(name) else "not a valid unit name"
    if name.startswith("."):
        problem = 'starts with "."'
    if problem is not None:
        raise ValueError(f"refusing unsafe unit name {quote(name)}: {problem}")


def content_hash(contents: str | bytes) -> str:
    """SHA1 hex of a unit's contents (fleet's unit hash)."""
    data = contents.encode() if isinstance(contents, str) else contents
    return hashlib.sha1(data).hexdigest()


