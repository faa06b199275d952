"""The API's listeners: fleet's HTTP API and fleetpy's gRPC API on one address.

Every address fleetd listens on (``unix:///var/run/fleet.sock``, ``api_tcp``)
is an asyncio listener here. A connection is told apart by its first bytes
(after TLS, when the address has it): the HTTP/2 client preface
(``PRI * HTTP/2.0``), which every gRPC client sends first, means fleetpy's
gRPC API, and the connection is piped to the gRPC server, which listens only on
a socket in a private 0700 directory; anything else is HTTP/1.x, answered by
:mod:`.http11` with fleet's v1 resources. Authorisation is the address's: the
socket's mode and group, TLS client certificates signed by ``api_cafile``,
checked before a byte is read, for both APIs alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Sequence

import grpc.aio

from fleetpy.api.limits import MAX_REQUEST_BYTES
from fleetpy.api.transport import TlsFiles, _read
from fleetpy.httpapi.http11 import Buffered, serve_connection
from fleetpy.httpapi.resources import Resources

log = logging.getLogger(__name__)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
COPY_CHUNK = 64 * 1024


async def sniff(reader: asyncio.StreamReader) -> bytes:
    """The first bytes: the whole HTTP/2 preface, or as soon as they differ from it."""
    data = b""
    while len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
        more = await reader.read(len(H2_PREFACE) - len(data))
        if not more:
            break
        data += more
    return data


def tls_context(tls: TlsFiles) -> ssl.SSLContext:
    """The server side of api_tcp's TLS; with api_cafile, client certificates required."""
    cert, key = _read(tls.cert_file, "API certificate"), _read(tls.key_file, "API key")
    if cert is None or key is None:
        raise ValueError("api_certfile and api_keyfile go together")
    ca = _read(tls.ca_file, "API client CA")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(os.path.expanduser(tls.cert_file), os.path.expanduser(tls.key_file))
    except ssl.SSLError as e:
        raise ValueError(f"API certificate {tls.cert_file} or key {tls.key_file}: {e}") from None
    if ca is not None:
        ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # gRPC clients insist on h2
    return ctx


class ApiServer:
    """The listeners, their connections and the gRPC server behind them."""

    def __init__(self, grpc_server: grpc.aio.Server, grpc_dir: str,
                 resources: Resources) -> None:
        self.grpc = grpc_server
        self._grpc_dir = grpc_dir
        self.grpc_path = os.path.join(grpc_dir, "grpc.sock")
        self.resources = resources
        self._listeners: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    def add_listener(self, server: asyncio.Server) -> None:
        self._listeners.append(server)

    async def on_connection(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            prefix = await sniff(reader)
            if not prefix:
                return
            if prefix == H2_PREFACE:
                await self._pipe(prefix, reader, writer)
            else:
                await serve_connection(Buffered(reader, prefix), writer,
                                       self.resources.handle, MAX_REQUEST_BYTES)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _pipe(self, prefix: bytes, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.grpc_path)
        up_writer.write(prefix)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(COPY_CHUNK):
                dst.write(data)
                await dst.drain()

        ends = [asyncio.create_task(copy(reader, up_writer)),
                asyncio.create_task(copy(up_reader, writer))]
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in ends:
                t.cancel()
            await asyncio.gather(*ends, return_exceptions=True)
            up_writer.close()

    async def stop(self, grace: float | None) -> None:
        """Stop listening, let gRPC calls end within ``grace``, then close every connection."""
        for listener in self._listeners:
            listener.close()
        await self.grpc.stop(grace)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        shutil.rmtree(self._grpc_dir, ignore_errors=True)


def private_grpc_dir(near: str | None) -> str:
    """A fresh 0700 directory for the gRPC server's own socket, beside the API socket
    ``near`` (in /run: not aged away like /tmp by systemd-tmpfiles), else in $TMPDIR."""
    parent = os.path.dirname(near) if near else None
    if parent:
        os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=".fleetpy-grpc-", dir=parent)


async def listen_unix(api: ApiServer, path: str) -> None:
    old_umask = os.umask(0o177)  # no window in which others may connect
    try:
        server = await asyncio.start_unix_server(api.on_connection, path)
    finally:
        os.umask(old_umask)
    api.add_listener(server)


async def listen_tcp(api: ApiServer, target: str, ctx: ssl.SSLContext | None) -> None:
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    server = await asyncio.start_server(
        api.on_connection, None if host in ("", "::") else host, int(port), ssl=ctx,
        family=socket.AF_UNSPEC, reuse_address=True)
    api.add_listener(server)


async def close_on_error(api: ApiServer, addresses: Sequence[str]) -> None:
    """Undo a partly started server (an address could not be bound)."""
    with contextlib.suppress(Exception):
        await api.stop(None)
    log.debug("API server on %s not started", ", ".join(addresses))
