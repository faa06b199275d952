"""The dashboard's HTTP side: the page, its live feed (SSE) and a unit's journal.

Served by fleetd on ``dashboard_address`` (off unless set) with the small
HTTP/1.1 server of :mod:`fleetpy.httpapi.http11`; TLS and client
certificates as the API's (api_certfile, api_keyfile, api_cafile) when they
are configured. Read-only: only GET is answered.

- ``/``, ``/static/<file>``: the page (files shipped in the package, no CDN).
- ``/api/state``: the current view (JSON, :mod:`fleetpy.dashboard.model`).
- ``/events``: server-sent events: ``event: view`` (the whole view) on
  connecting, then ``event: patch`` per change (:mod:`fleetpy.dashboard.patch`).
- ``/api/journal/<unit>[?machine=ID]``: the tail of the unit's journal
  (``journalctl --unit``, as ``fleetctl journal`` runs on the unit's machine), on
  this machine when the unit runs here, else on the machine given or its first:
  fetched from that machine's dashboard by this fleetd (:mod:`.remote`), or a
  message saying why not. ``?local=1`` (what one fleetd asks another): this
  machine's journal only, never forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from importlib import resources
from typing import Any

from fleetpy.api.transport import TlsFiles
from fleetpy.dashboard.feed import Feed
from fleetpy.dashboard.remote import RemoteError, client_context, fetch_journal
from fleetpy.httpapi.http11 import Buffered, StreamResponse, serve_connection
from fleetpy.httpapi.resources import Request, Response, error_response
from fleetpy.model.names import InvalidUnitName, validate_unit_name

log = logging.getLogger("fleetpy.dashboard")

STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
KEEPALIVE = 15.0  # seconds between SSE comments on a quiet cluster
JOURNAL_LINES = 50
JOURNAL_TIMEOUT = 5.0
MAX_BODY = 64 * 1024
FIRST_LISTING = 5.0  # seconds a request waits for the feed's first listing of the registry
NOT_YET = "the dashboard has not read the registry yet (is etcd reachable?)"


def static_file(name: str) -> bytes:
    return (resources.files("fleetpy.dashboard") / "static" / name).read_bytes()


class Dashboard:
    """The request handler of the dashboard over a running :class:`Feed`."""

    def __init__(self, feed: Feed, client: ssl.SSLContext | None = None) -> None:
        self.feed = feed
        self._client = client  # TLS to other machines' dashboards (None: plain HTTP)
        self._unreachable: dict[str, str] = {}  # machine -> why its journal could not be had
        self._connections: set[asyncio.Task[None]] = set()

    async def handle(self, req: Request) -> Response | StreamResponse:
        if req.method != "GET":
            return error_response(405, "the dashboard is read-only")
        path = req.path
        if path in ("/", "/index.html"):
            return Response(200, static_file("index.html"), STATIC["index.html"])
        if path.startswith("/static/") and path[len("/static/"):] in STATIC:
            name = path[len("/static/"):]
            return Response(200, static_file(name), STATIC[name])
        if path == "/api/state":
            text = await self._current()
            return error_response(503, NOT_YET) if text is None else Response(200, text.encode())
        if path == "/events":
            return StreamResponse(self._events())
        if path.startswith("/api/journal/"):
            return await self._journal(path[len("/api/journal/"):], req.query)
        return error_response(404, f"no such page: {path}")

    async def _current(self) -> str | None:
        try:
            async with asyncio.timeout(FIRST_LISTING):
                return await self.feed.current()
        except TimeoutError:
            return None

    async def _events(self) -> AsyncIterator[bytes]:
        seen = 0
        yield b"retry: 1000\n\n"
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE):
                    seen, kind, texts = await self.feed.next(seen)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            head = b"event: " + kind.encode() + b"\ndata: "
            yield b"".join(head + text.encode() + b"\n\n" for text in texts)

    async def _journal(self, name: str, query: Mapping[str, Sequence[str]]) -> Response:
        try:
            validate_unit_name(name)
        except InvalidUnitName as exc:
            return error_response(400, str(exc))
        if await self._current() is None:
            return error_response(503, NOT_YET)
        here = self.feed.view["this_machine"]
        unit = next((u for u in self.feed.view["units"] if u["name"] == name), None)
        if unit is None:
            return error_response(404, f"unit {name} not found")
        placed = {p["machine"]: p["ip"] for p in unit["placements"]}
        if "local" in query:  # another fleetd asks: this machine's journal or nothing
            if here not in placed:
                return _json({"here": False, "machine": here, "lines": "",
                              "message": f"{name} does not run on {here[:8]} (any more)"})
            return _json({"here": True, "machine": here,
                          "lines": await journal_tail(name, JOURNAL_LINES), "message": ""})
        wanted = (query.get("machine") or [""])[-1]
        if wanted and wanted not in placed:
            return error_response(404, f"{name} is not scheduled on machine {wanted[:40]}")
        target = wanted or (here if here in placed else next(iter(placed), ""))
        if not target:
            return _json({"here": False, "machine": "", "lines": "",
                          "message": f"{name} is not scheduled on any machine yet"})
        if target == here:
            return _json({"here": True, "machine": here,
                          "lines": await journal_tail(name, JOURNAL_LINES), "message": ""})
        return _json(await self._remote_journal(name, target, placed[target]))

    async def _remote_journal(self, name: str, machine_id: str, ip: str) -> dict[str, Any]:
        """The journal of ``name`` on another machine, from that machine's dashboard."""
        where = f"{machine_id[:8]} ({ip})"
        answer: dict[str, Any] = {"here": False, "machine": machine_id, "lines": ""}
        record = self.feed.machine(machine_id)
        url = record.dashboard if record is not None else ""
        if not url:
            why = "serves no dashboard" if record is not None else "is not registered"
            return {**answer, "message": f"{name} runs on {where}, which {why}: "
                                         f"fleetctl journal {name}"}
        try:
            got = await fetch_journal(url, name, self._client)
        except RemoteError as exc:
            if self._unreachable.get(machine_id) != str(exc):  # once, not per page poll
                self._unreachable[machine_id] = str(exc)
                log.warning("cannot fetch journals from machine %s: %s", where, exc)
            return {**answer, "message": f"{name} runs on {where}, whose journal this "
                                         f"dashboard cannot fetch: {exc} "
                                         f"(fleetctl journal {name})"}
        if self._unreachable.pop(machine_id, None) is not None:
            log.info("journals from machine %s can be fetched again", where)
        if got["machine"] != machine_id:
            return {**answer, "message": f"{url} is machine {got['machine'][:8]}, not "
                                         f"{where}: fleetctl journal {name}"}
        if not got.get("here"):
            return {**answer, "message": f"{name} no longer runs on {where}: {got['message']}"}
        return {**answer, "lines": got["lines"], "message": ""}

    async def on_connection(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await serve_connection(Buffered(reader), writer, self.handle, MAX_BODY)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def close_connections(self) -> None:
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)


def _json(entity: object) -> Response:
    return Response(200, json.dumps(entity).encode())


async def journal_tail(name: str, lines: int) -> str:
    """``journalctl --unit NAME`` on this machine (the name is --unit's value, never an option)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "journalctl", "--no-pager", f"--lines={lines}", "--output=short", f"--unit={name}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        return f"cannot run journalctl: {exc}"
    try:
        async with asyncio.timeout(JOURNAL_TIMEOUT):
            out, _ = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return f"journalctl gave no answer within {JOURNAL_TIMEOUT:g}s"
    return out.decode("utf-8", "replace")


def listen_target(address: str) -> tuple[str | None, int]:
    """``HOST:PORT`` (``[v6]:PORT``, ``:PORT`` for every address) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any (tests)
        raise ValueError(f"dashboard_address {address!r}: expected HOST:PORT")
    host = host.strip("[]")
    return (None if host in ("", "::", "0.0.0.0") else host), int(port)


def tls_for_dashboard(tls: TlsFiles | None) -> ssl.SSLContext | None:
    """The API's TLS rules (client certificates when api_cafile is set), for browsers:
    HTTP/1.1 only (the API's context offers h2 for gRPC)."""
    if tls is None or not tls.cert_file:
        return None
    from fleetpy.httpapi.front import tls_context

    ctx = tls_context(tls)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def start_dashboard(feed: Feed, address: str,
                          tls: TlsFiles | None) -> tuple[asyncio.Server, Dashboard]:
    """Listen on ``address``; ValueError for a bad address or TLS file, OSError to bind."""
    host, port = listen_target(address)
    ctx = tls_for_dashboard(tls)
    dashboard = Dashboard(feed, client_context(tls))
    server = await asyncio.start_server(dashboard.on_connection, host, port, ssl=ctx,
                                        family=socket.AF_UNSPEC, reuse_address=True)
    scheme = "https" if ctx is not None else "http"
    clients = ", client certificates required" if ctx is not None and tls and tls.ca_file else ""
    log.info("dashboard on %s://%s%s", scheme, address, clients)
    return server, dashboard
