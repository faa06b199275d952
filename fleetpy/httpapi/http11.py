"""A small HTTP/1.1 server over an asyncio stream, enough for fleet's API clients.

Persistent connections (HTTP/1.1 default; ``Connection: close`` honoured;
HTTP/1.0 closes unless keep-alive), request bodies by Content-Length or
chunked transfer coding, ``Expect: 100-continue`` (curl sends it for larger
bodies). A malformed request gets 400 and the connection is closed; a body over
``max_body`` gets 413. Responses always carry Content-Length, but for a
:class:`StreamResponse` (server-sent events): written as it comes, then closed.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

from fleetpy.httpapi.resources import Request, Response, error_response

log = logging.getLogger(__name__)

MAX_LINE = 16 * 1024
MAX_HEADERS = 100
SERVER = "fleetd/fleetpy"



@dataclass(frozen=True, slots=True)
class StreamResponse:
    """A response of unknown length (server-sent events): its chunks are written as
    they come, then the connection is closed (no Content-Length, so no keep-alive)."""

    chunks: AsyncIterator[bytes]
    content_type: str = "text/event-stream"


Handler = Callable[[Request], Awaitable[Response | StreamResponse]]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Buffered:
    """An asyncio StreamReader with bytes already read (the sniffed prefix) put back."""

    def __init__(self, reader: asyncio.StreamReader, prefix: bytes = b"") -> None:
        self._reader = reader
        self._buf = bytearray(prefix)

    async def _fill(self) -> bool:
        data = await self._reader.read(64 * 1024)
        self._buf += data
        return bool(data)

    async def line(self) -> bytes | None:
        """One line without its CRLF; None at a clean end of stream."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line.rstrip(b"\r")
            if len(self._buf) > MAX_LINE:
                raise BadRequest(431, "request line or header too long")
            if not await self._fill():
                if self._buf:
                    raise BadRequest(400, "connection closed in the middle of a line")
                return None

    async def exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not await self._fill():
                raise BadRequest(400, "connection closed in the middle of the body")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


def _response_bytes(resp: Response, close: bool) -> bytes:
    reason = HTTPStatus(resp.status).phrase
    head = [f"HTTP/1.1 {resp.status} {reason}", f"Server: {SERVER}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Length: {len(resp.body)}"]
    if resp.body:
        head.append(f"Content-Type: {resp.content_type}")
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body


async def _body(reader: Buffered, writer: asyncio.StreamWriter, headers: dict[str, str],
                max_body: int) -> bytes:
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = headers.get("content-length")
    if not chunked and length is None:
        return b""
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if not chunked:
        assert length is not None
        if not length.isdigit():
            raise BadRequest(400, f"invalid Content-Length {length!r}")
        if int(length) > max_body:
            raise BadRequest(413, f"request body over {max_body} bytes")
        return await reader.exactly(int(length))
    body = bytearray()
    while True:
        size_line = await reader.line()
        try:
            size = int((size_line or b"").split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest(400, "invalid chunk size") from None
        if size == 0:
            while await reader.line():  # trailers up to the empty line
                pass
            return bytes(body)
        if len(body) + size > max_body:
            raise BadRequest(413, f"request body over {max_body} bytes")
        body += await reader.exactly(size)
        await reader.exactly(2)


async def _request(reader: Buffered, writer: asyncio.StreamWriter,
                   max_body: int) -> tuple[Request, bool] | None:
    """The next request and whether the connection stays open; None at end of stream."""
    line = await reader.line()
    while line == b"":  # tolerate empty lines between requests (RFC 9112 2.2)
        line = await reader.line()
    if line is None:
        return None
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        h = await reader.line()
        if not h:
            break
        name, sep, value = h.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    else:
        raise BadRequest(431, "too many headers")
    conn = headers.get("connection", "").lower()
    keep = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
    body = await _body(reader, writer, headers, max_body)
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    path = urllib.parse.unquote(url.path or "/")
    return Request(method, path, query, headers, body), keep


async def _stream(resp: StreamResponse, writer: asyncio.StreamWriter) -> None:
    head = ["HTTP/1.1 200 OK", f"Server: {SERVER}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Type: {resp.content_type}", "Cache-Control: no-store",
            "Connection: close"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    async for chunk in resp.chunks:
        writer.write(chunk)
        await writer.drain()


async def serve_connection(reader: Buffered, writer: asyncio.StreamWriter, handler: Handler,
                           max_body: int) -> None:
    """Answer requests on one connection until either side closes it."""
    try:
        while True:
            try:
                got = await _request(reader, writer, max_body)
            except BadRequest as e:
                writer.write(_response_bytes(error_response(e.status, str(e)), close=True))
                await writer.drain()
                return
            if got is None:
                return
            req, keep = got
            try:
                resp = await handler(req)
            except Exception:  # a bug must not cut the connection without an answer
                log.exception("HTTP %s %s failed", req.method, req.path)
                resp = error_response(500, "internal error")
            if isinstance(resp, StreamResponse):
                await _stream(resp, writer)
                return
            log.debug("HTTP %s %s -> %d", req.method, req.path, resp.status)
            writer.write(_response_bytes(resp, close=not keep))
            await writer.drain()
            if not keep:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
