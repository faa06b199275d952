"""etcd v3 over gRPC: a typed ``KVBackend`` with failover, timeouts, TLS and auth.

It uses aetcd's generated etcd stubs (``aetcd.rpc``, the one set of etcd
protobufs this process may load) on channels of its own: aetcd's ``Client``
dials one endpoint, only without TLS, and its watcher cannot resume, so
endpoints, keepalive options, timeouts and errors are handled here.

Every call is tried on the endpoint that answered last, then on the others;
each attempt has the request timeout. Only attempts that cannot have been
applied (endpoint down) or that are harmless to repeat (reads, plain puts) move
on to the next endpoint; otherwise the error says the write may have landed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
from aetcd import rpc

from fleetpy.registry.base import RegistryError
from fleetpy.registry.endpoints import (
    DEFAULT_ENDPOINTS,
    Endpoint,
    parse_endpoints,
    unreachable_message,
)
from fleetpy.registry.etcd_errors import UNREACHABLE, Identity, read_pem, translate, why_unusable
from fleetpy.registry.etcd_keepalive import KeepaliveStream
from fleetpy.registry.etcd_rpc import (
    EOF,
    channel_options,
    compare_to,
    event_from,
    kv_from,
    op_result_from,
    op_to,
    reason,
)
from fleetpy.registry.kv import Compare, Get, Op, Put, RangeResult, TxnResult, WatchBatch

log = logging.getLogger(__name__)

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]
# A refresh may wait this long for its answer even with a shorter request timeout:
# an answer in 4 s still keeps the lease (refreshed every ttl/3), and giving up
# sooner on a busy etcd, or in a busy process (500 hollow machines whose event loop
# ran 2 s late while 10,000 units started: every refresh timed out at 3 s), only
# breaks the stream and sends more refreshes. A dead member is still left in time:
# a refresh sent at ttl/3 is retried on the next member at ttl/3 + 5 s.
KEEPALIVE_TIMEOUT = 5.0
# etcd answers the requests of one keepalive stream one after the other, and a
# renewal waits for etcd to have applied what it committed: under a heavy write
# load one stream for hundreds of leases falls behind: 500 hollow machines on 8 streams
# (and on 32) went 20 s without a renewal while 10,000 units started, every first
# refresh timing out, while a lease alone on its stream was renewed within 1 s. So a
# few leases per stream at most (a real fleetd has one lease: one stream).
KEEPALIVE_STREAMS = 128

class _Conn:
    """One endpoint's channel and stubs (created lazily, inside the event loop)."""

    def __init__(self, endpoint: Endpoint, channel: grpc.aio.Channel) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self.kv: Any = rpc.KVStub(channel)
        self.lease: Any = rpc.LeaseStub(channel)
        self.watch: Any = rpc.WatchStub(channel)
        self.auth: Any = rpc.AuthStub(channel)
        self.metadata: Metadata = ()

    def ready(self) -> bool:
        return self.channel.get_state() == grpc.ChannelConnectivity.READY


class EtcdClient:
    """A ``KVBackend`` on one or more etcd endpoints (see module docstring)."""

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINTS,
        *,
        request_timeout: float = 1.0,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive_time: float = 10.0,
        keepalive_timeout: float = 5.0,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        if (username is None) != (password is None):
            raise ValueError("etcd username and password go together")
        if (cert_file is None) != (key_file is None):
            raise ValueError("etcd cert_file and key_file go together")
        self.request_timeout = request_timeout
        self.identity = Identity(cert_file, ca_file, username)  # for error messages
        self._username = username
        self._password = password
        self._options = channel_options(keepalive_time, keepalive_timeout)
        self._credentials: grpc.ChannelCredentials | None = None
        if any(e.secure for e in self.endpoints):  # https:// endpoints; http:// stay plain
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=read_pem(ca_file, "etcd CA file"),
                private_key=read_pem(key_file, "etcd key file"),
                certificate_chain=read_pem(cert_file, "etcd certificate file"),
            )
        self._conns: dict[int, _Conn] = {}
        self._keepalives: dict[tuple[str, int], KeepaliveStream] = {}  # (url, slot)
        self._current = 0
        self._closed = False
        self.requests: collections.Counter[str] = collections.Counter()
        """RPCs attempted, by kind (range, txn, lease_keepalive, watch...)."""
        self.observe: Callable[[str, float, bool], None] | None = None
        """Called after every attempt: (kind, seconds, succeeded); fleetd's metrics."""

    @property
    def description(self) -> str:
        return ",".join(e.url for e in self.endpoints)

    @property
    def current_endpoint(self) -> str:
        """The endpoint tried first: the one that answered last."""
        return self.endpoints[self._current].url

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        self._closed = True
        streams, self._keepalives = list(self._keepalives.values()), {}
        for stream in streams:
            await stream.close()
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            await conn.channel.close(None)

    # plumbing -------------------------------------------------------------

    def _conn(self, index: int) -> _Conn:
        conn = self._conns.get(index)
        if conn is None:
            endpoint = self.endpoints[index]
            if self._credentials is not None and endpoint.secure:  # the scheme decides
                channel = grpc.aio.secure_channel(
                    endpoint.target, self._credentials, options=self._options
                )
            else:
                channel = grpc.aio.insecure_channel(endpoint.target, options=self._options)
            conn = self._conns[index] = _Conn(endpoint, channel)
        return conn

    async def _authenticate(self, conn: _Conn) -> None:
        request = rpc.AuthenticateRequest(name=self._username, password=self._password)
        response = await conn.auth.Authenticate(request, timeout=self.request_timeout)
        conn.metadata = (("token", response.token),)

    async def _attempt(self, conn: _Conn, call: Callable[[_Conn], Awaitable[T]]) -> T:
        if self._username is not None and not conn.metadata:
            await self._authenticate(conn)
        try:
            return await call(conn)
        except grpc.aio.AioRpcError as e:
            stale_token = e.code() == grpc.StatusCode.UNAUTHENTICATED and conn.metadata
            if not stale_token:
                raise
            log.info("etcd %s: auth token rejected, authenticating again", conn.endpoint.url)
            await self._authenticate(conn)
            return await call(conn)

    async def _rpc(
        self, what: str, call: Callable[[_Conn], Awaitable[T]], *, idempotent: bool
    ) -> tuple[T, _Conn]:
        if self._closed:
            raise RegistryError("etcd client is closed")
        failures: list[tuple[str, str]] = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._current + step) % count
            conn = self._conn(index)
            was_ready = conn.ready()
            self.requests[what] += 1
            started = time.perf_counter()
            try:
                result = await self._attempt(conn, call)
            except grpc.aio.AioRpcError as e:
                if self.observe is not None:
                    self.observe(what, time.perf_counter() - started, False)
                # "no leader": the member refused before proposing anything.
                unsent = not was_ready or "no leader" in (e.details() or "")
                if e.code() in UNREACHABLE and (idempotent or unsent):
                    failures.append((conn.endpoint.url, self._reason(conn, e)))
                    continue
                raise self._translate(what, conn, e) from None
            if self.observe is not None:
                self.observe(what, time.perf_counter() - started, True)
            if index != self._current:
                tried = "; ".join(f"{url}: {why}" for url, why in failures) or "first use"
                log.info("etcd: now using %s (%s)", conn.endpoint.url, tried)
                self._current = index
            return result, conn
        raise RegistryError(unreachable_message(failures))

    def _reason(self, conn: _Conn, error: grpc.aio.AioRpcError) -> str:
        return why_unusable(self.identity, conn.endpoint.secure, error, self.request_timeout)

    def _translate(self, what: str, conn: _Conn, error: grpc.aio.AioRpcError) -> RegistryError:
        return translate(self.identity, what, conn.endpoint.url, conn.endpoint.secure, error,
                         self.request_timeout)

    # KVBackend --------------------------------------------------------------

    async def range(
        self, key: bytes, range_end: bytes | None = None, *, limit: int = 0, revision: int = 0
    ) -> RangeResult:
        request = rpc.RangeRequest(key=key, range_end=range_end or b"", limit=limit,
                                   revision=revision)

        async def call(conn: _Conn) -> Any:
            return await conn.kv.Range(
                request, timeout=self.request_timeout, metadata=conn.metadata
            )

        response, _ = await self._rpc("range", call, idempotent=True)
        return RangeResult(response.header.revision, [kv_from(kv) for kv in response.kvs],
                           bool(response.more))

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        request = rpc.TxnRequest(
            compare=[compare_to(c) for c in compare],
            success=[op_to(op) for op in success],
            failure=[op_to(op) for op in failure],
        )

        async def call(conn: _Conn) -> Any:
            return await conn.kv.Txn(request, timeout=self.request_timeout, metadata=conn.metadata)

        repeatable = not compare and all(isinstance(op, Put | Get) for op in success)
        response, _ = await self._rpc("txn", call, idempotent=repeatable)
        results = [op_result_from(r) for r in response.responses]
        return TxnResult(response.succeeded, response.header.revision, results)

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        async def call(conn: _Conn) -> Any:
            return await conn.lease.LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl), timeout=self.request_timeout, metadata=conn.metadata
            )

        response, _ = await self._rpc("lease_grant", call, idempotent=True)
        if response.error:
            raise RegistryError(f"etcd refused a lease of {ttl}s: {response.error}")
        return int(response.ID), int(response.TTL)

    async def lease_keepalive(self, lease_id: int) -> int:
        """One refresh, as one message on the connection's shared keepalive stream."""
        async def call(conn: _Conn) -> int:
            stream = await self._keepalive_stream(conn, lease_id)
            return await stream.refresh(lease_id, max(self.request_timeout, KEEPALIVE_TIMEOUT))

        ttl, _ = await self._rpc("lease_keepalive", call, idempotent=True)
        return ttl

    async def _keepalive_stream(self, conn: _Conn, lease_id: int) -> KeepaliveStream:
        """The lease's keepalive stream on this connection (one of KEEPALIVE_STREAMS);
        a new one if it broke or the token changed."""
        key = (conn.endpoint.url, lease_id % KEEPALIVE_STREAMS)
        stream = self._keepalives.get(key)
        if stream is None or stream.broken is not None or stream.metadata != conn.metadata:
            if stream is not None:
                await stream.close()
                # another refresh may have replaced it meanwhile: use that one (a second
                # new stream would leave the first one's tasks pending, unreferenced)
                fresh = self._keepalives.get(key)
                if (fresh is not None and fresh is not stream and fresh.broken is None
                        and fresh.metadata == conn.metadata):
                    return fresh
            stream = self._keepalives[key] = KeepaliveStream(conn.lease, conn.metadata)
        return stream

    async def lease_revoke(self, lease_id: int) -> None:
        async def call(conn: _Conn) -> None:
            try:
                await conn.lease.LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease_id),
                    timeout=self.request_timeout,
                    metadata=conn.metadata,
                )
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise

        await self._rpc("lease_revoke", call, idempotent=True)

    async def watch(
        self, key: bytes, range_end: bytes, start_revision: int
    ) -> AsyncGenerator[WatchBatch, None]:
        create = rpc.WatchRequest(
            # progress_notify: etcd tells an idle watch its revision now and
            # then (every 10 min), so that a resume after a long quiet spell
            # does not start below a compaction and need a re-listing.
            create_request=rpc.WatchCreateRequest(
                key=key, range_end=range_end, start_revision=start_revision, progress_notify=True
            )
        )
        async def call(conn: _Conn) -> tuple[Any, Any]:
            # "hasleader": etcd cancels the stream if its member loses the
            # cluster leader, instead of leaving us on a silent partition.
            # The create request is written on the call (our side stays open: closing
            # it would end the stream), not fed by a request iterator that gRPC would
            # consume in a task of its own, destroyed pending when the stream broke.
            stream = conn.watch.Watch(metadata=(*conn.metadata, ("hasleader", "true")))
            try:
                async with asyncio.timeout(self.request_timeout):
                    await stream.write(create)
                    first = await stream.read()
            except TimeoutError:
                stream.cancel()
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.aio.Metadata(),
                    grpc.aio.Metadata(),
                    "watch not created in time",
                    None,
                ) from None
            except BaseException:
                stream.cancel()
                raise
            return stream, first

        (stream, response), conn = await self._rpc("watch", call, idempotent=True)
        url = conn.endpoint.url
        try:
            while True:
                if response is EOF:
                    raise RegistryError(f"etcd at {url} closed the watch stream")
                if response.compact_revision:
                    yield WatchBatch(compact_revision=int(response.compact_revision))
                    return
                if response.canceled:
                    why = response.cancel_reason or "no reason given"
                    raise RegistryError(f"etcd at {url} cancelled the watch: {why}")
                if response.created:
                    yield WatchBatch(created=True)
                if response.events:
                    yield WatchBatch(events=[event_from(e) for e in response.events])
                elif not response.created:
                    yield WatchBatch(progress=int(response.header.revision))
                try:
                    response = await stream.read()
                except grpc.aio.AioRpcError as e:
                    why = reason(e, self.request_timeout)
                    raise RegistryError(f"watch stream from {url} broke: {why}") from None
        finally:
            stream.cancel()
