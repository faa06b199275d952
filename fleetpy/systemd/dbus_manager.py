"""The real UnitManager: files on disk, systemd over D-Bus through a worker process.

All pystemd calls run in ``python -m fleetpy.systemd.worker`` (see there for
why). This side only writes frames to the worker's stdin and reads its stdout
with asyncio streams, so a hung systemd costs a timeout, never a frozen loop.

Worker life cycle: a supervisor task keeps one worker running. A call that
does not answer within ``call_timeout`` raises SystemdError and the worker is
killed (a hung D-Bus call cannot be cancelled any other way); when a worker
exits, calls in flight fail with SystemdError and a new worker is started with
backoff. After a restart the change stream re-emits the current status of the
watched units, since signals may have been lost meanwhile. Neither a restart
nor ``close()`` touches any unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleetpy.systemd import protocol
from fleetpy.systemd.base import ChangeFeed, ChangeStream, SystemdError, UnitStatus
from fleetpy.systemd.files import DEFAULT_LINK_DIR, DEFAULT_UNITS_DIR, UnitFileStore

log = logging.getLogger(__name__)

PRIVATE_SOCKET = b"unix:path=/run/systemd/private"
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
CLOSE_GRACE_S = 2.0


class DbusUnitManager:
    """UnitManager on a real systemd. Construct, ``await start()``, use, ``await close()``.

    ``bus_address`` is systemd's private socket by default (root only, no
    dbus-daemon needed); for a dbus-daemon's system bus pass its address and
    ``bus_client=True``. ``worker_argv`` replaces the worker command (tests).
    """

    def __init__(
        self,
        *,
        units_dir: Path = DEFAULT_UNITS_DIR,
        link_dir: Path = DEFAULT_LINK_DIR,
        bus_address: bytes = PRIVATE_SOCKET,
        bus_client: bool = False,
        call_timeout: float = 10.0,
        worker_argv: Sequence[str] | None = None,
    ) -> None:
        self.files = UnitFileStore(units_dir, link_dir)
        self.call_timeout = call_timeout
        if worker_argv is None:
            worker_argv = [sys.executable, "-m", "fleetpy.systemd.worker"]
            worker_argv += ["--address", bus_address.decode()]
            worker_argv += ["--bus-client"] if bus_client else []
        self._argv = list(worker_argv)
        self._feed = ChangeFeed()
        self._watch: set[str] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._ever_ready = False
        self._supervisor: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None
        self._closing = False
        self.restarts = 0  # worker restarts so far (for tests and metrics)
        self.close_grace = CLOSE_GRACE_S

    # ---- life cycle
    async def start(self) -> None:
        """Start the worker and wait until it is connected to systemd.

        Raises SystemdError if that takes longer than ``call_timeout``; the
        manager then keeps trying in the background until ``close()``.
        """
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="systemd-worker")
        try:
            await asyncio.wait_for(self._ready.wait(), self.call_timeout)
        except TimeoutError:
            raise SystemdError(
                f"systemd worker not ready after {self.call_timeout:g}s ({' '.join(self._argv)})"
            ) from None

    async def close(self) -> None:
        """Stop the worker (stdin EOF, then kill) and end change streams. No unit is touched."""
        self._closing = True
        for task in (self._supervisor, self._resync):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), self.close_grace)
            except TimeoutError:
                log.warning("systemd worker %d ignored stdin EOF: killing it", proc.pid)
                self._kill(proc)
                await proc.wait()
        self._fail_pending("systemd manager closed")
        self._ready.set()  # wake calls waiting for a worker: they see _closing and fail
        self._feed.close()

    # ---- unit files
    async def write_unit(self, name: str, contents: str) -> None:
        self.files.write(name, contents)

    async def remove_unit(self, name: str) -> None:
        self.files.remove(name)

    def loaded_files(self) -> dict[str, str]:
        return self.files.hashes()

    async def outside_fleet(self, names: Sequence[str]) -> dict[str, str]:
        found = self.files.foreign(names)
        rest = [n for n in names if n not in found]
        if rest:
            for name, load, fragment in await self._call("origin", names=rest):
                own = (str(self.files.link_dir / name), str(self.files.units_dir / name))
                if fragment in own:
                    continue  # systemd still remembers fleet's (since removed) file
                found[name] = fragment or f"known to systemd, load state {load}"
        return found

    # ---- systemd calls
    async def daemon_reload(self) -> None:
        await self._call("reload")

    async def start_unit(self, name: str) -> None:
        await self._call("start", name=name)

    async def stop_unit(self, name: str) -> None:
        try:
            await self._call("stop", name=name)
        except _CallError as exc:
            if exc.kind != protocol.NO_SUCH_UNIT:
                raise
            log.info("stop %s: systemd does not know it (%s): already stopped", name, exc)

    async def statuses(self, names: Sequence[str]) -> dict[str, UnitStatus]:
        if not names:
            return {}
        rows = await self._call("list", names=list(names))
        return {row[0]: UnitStatus(*row) for row in rows}

    async def watch_units(self, names: set[str]) -> None:
        self._watch = set(names)
        if self._ready.is_set():
            await self._call("watch", names=sorted(self._watch))

    def changes(self) -> ChangeStream:
        return self._feed.subscribe()

    async def debug_hang(self, seconds: float) -> None:
        """Test only: make the worker block for SECONDS, like a hung systemd."""
        await self._call("hang", seconds=seconds)

    # ---- the worker
    async def _call(self, op: str, **args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        proc: asyncio.subprocess.Process | None = None
        rid = next(self._ids)
        if self._closing:
            raise SystemdError(f"systemd {op}: manager is closed")
        try:
            async with asyncio.timeout(self.call_timeout):
                await self._ready.wait()
                proc = self._proc
                if self._closing or proc is None or proc.stdin is None:
                    raise SystemdError(f"systemd {op}: manager is closed")
                self._pending[rid] = fut
                proc.stdin.write(protocol.encode({"id": rid, "op": op, "args": args}))
                await proc.stdin.drain()
                try:
                    return await fut
                except _CallError as exc:
                    exc.args = (f"systemd {op} {_describe(args)}: {exc}",)
                    raise
        except TimeoutError:
            if proc is None:
                raise SystemdError(
                    f"systemd {op}: no connection to systemd within {self.call_timeout:g}s"
                ) from None
            log.warning(
                "systemd %s: no answer in %gs, killing worker %d", op, self.call_timeout, proc.pid
            )
            self._abandon(proc)
            raise SystemdError(f"systemd {op} timed out after {self.call_timeout:g}s") from None
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise SystemdError(f"systemd {op}: worker gone ({exc})") from None
        finally:
            self._pending.pop(rid, None)

    async def _supervise(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._closing:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self._argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    start_new_session=True,  # a ^C to fleetd must not kill it mid-call
                )
            except OSError as exc:
                log.error("cannot start systemd worker %s: %s", self._argv, exc)
            else:
                self._proc = proc
                try:
                    await self._read(proc)
                finally:
                    self._ready.clear()
                    self._fail_pending("systemd worker exited")
                rc = await proc.wait()
                if self._closing:
                    return
                log.warning("systemd worker %d exited (code %s): restarting", proc.pid, rc)
            if loop.time() - started > 10 * BACKOFF_MAX_S:
                backoff = BACKOFF_MIN_S  # it ran fine for a while: restart promptly
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            self.restarts += 1

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                header = await proc.stdout.readexactly(protocol.HEADER.size)
                (size,) = protocol.HEADER.unpack(header)
                buf = bytearray(header + await proc.stdout.readexactly(size))
                messages = protocol.split_frames(buf)
            except asyncio.IncompleteReadError:
                return
            except ValueError as exc:  # a corrupt frame: this worker cannot be trusted
                log.error("bad frame from systemd worker %d (%s): killing it", proc.pid, exc)
                self._abandon(proc)
                return
            for message in messages:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            fut = self._pending.get(message["id"])
            if fut is None or fut.done():
                return  # its caller timed out or went away
            if "err" in message:
                fut.set_exception(_CallError(message.get("kind", ""), str(message["err"])))
            else:
                fut.set_result(message.get("ok"))
        elif message.get("ev") == "changes":
            for name, load, active, sub in message["units"]:
                if self._watch is None or name in self._watch:
                    self._feed.publish(UnitStatus(name, load, active, sub))
        elif message.get("ev") == "ready":
            log.info("systemd worker %s connected", message.get("pid"))
            self._ready.set()
            if self._ever_ready or self._watch is not None:
                self._resync = asyncio.create_task(self._after_restart(self._ever_ready))
            self._ever_ready = True

    async def _after_restart(self, restarted: bool) -> None:
        """Re-send the watch set; after a restart re-emit the watched units' status."""
        try:
            if self._watch is not None:
                await self._call("watch", names=sorted(self._watch))
            if restarted:
                names = None if self._watch is None else sorted(self._watch)
                if names != []:
                    rows = await self._call("list", names=names)
                    log.info("worker restarted: re-emitting the status of %d units", len(rows))
                    for row in rows:
                        self._feed.publish(UnitStatus(*row))
        except SystemdError as exc:
            log.warning("could not resync after a worker restart: %s", exc)

    def _fail_pending(self, reason: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(SystemdError(reason))
        self._pending.clear()

    def _abandon(self, proc: asyncio.subprocess.Process) -> None:
        """Kill PROC and send no more calls to it (the supervisor starts another)."""
        if proc is self._proc:
            self._ready.clear()
        self._kill(proc)

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


class _CallError(SystemdError):
    """systemd answered a call with an error (kind: pystemd's exception class name)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _describe(args: dict[str, Any]) -> str:
    return " ".join(str(v) if not isinstance(v, list) else ",".join(v) for v in args.values())
