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
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from aetcd import rpc

from fleetpy.registry.base import LeaseLostError, RegistryError
from fleetpy.registry.endpoints import (
    DEFAULT_ENDPOINTS,
    Endpoint,
    parse_endpoints,
    unreachable_message,
)
from fleetpy.registry.kv import (
    Compare,
    Delete,
    EventType,
    Get,
    KeyValue,
    KVEvent,
    Op,
    OpResult,
    Put,
    RangeResult,
    Target,
    TxnResult,
    WatchBatch,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]

_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # grpc-stubs lags grpcio
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_TARGETS = {
    Target.VALUE: (rpc.Compare.VALUE, "value"),
    Target.CREATE: (rpc.Compare.CREATE, "create_revision"),
    Target.MOD: (rpc.Compare.MOD, "mod_revision"),
    Target.VERSION: (rpc.Compare.VERSION, "version"),
    Target.LEASE: (rpc.Compare.LEASE, "lease"),
}


def channel_options(keepalive_time: float, keepalive_timeout: float) -> list[tuple[str, int]]:
    """gRPC channel arguments: keepalive pings on open streams, quick reconnects.

    etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time)
    and pings without an open call, so pings are sent only while a call
    (a watch) is open. Reconnect backoff is capped at 1 s (gRPC's default cap
    of 120 s would keep a client away long after etcd came back).
    """
    return [
        ("grpc.keepalive_time_ms", int(keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.max_receive_message_length", 256 * 2**20),
        ("grpc.enable_retries", 0),
    ]


def _reason(error: grpc.aio.AioRpcError, timeout: float) -> str:
    """A short human reason for an RPC failure."""
    if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"timed out after {timeout:g}s"
    details = error.details() or error.code().name
    lower = details.lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("no route to host", "no route to host"),
        ("dns resolution failed", "cannot resolve host"),
        ("handshake", f"TLS handshake failed ({details})"),
        ("socket closed", "connection closed"),
        ("connection reset", "connection reset"),
    ):
        if needle in lower:
            return reason
    return details


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
        self._username = username
        self._password = password
        self._options = channel_options(keepalive_time, keepalive_timeout)
        self._credentials: grpc.ChannelCredentials | None = None
        if ca_file or cert_file or any(e.secure for e in self.endpoints):
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(ca_file).read_bytes() if ca_file else None,
                private_key=Path(key_file).read_bytes() if key_file else None,
                certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
            )
        self._conns: dict[int, _Conn] = {}
        self._current = 0
        self._closed = False
        self.requests: collections.Counter[str] = collections.Counter()
        """RPCs attempted, by kind (range, txn, lease_keepalive, watch...)."""

    @property
    def description(self) -> str:
        return ",".join(e.url for e in self.endpoints)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        self._closed = True
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            await conn.channel.close(None)

    # plumbing -------------------------------------------------------------

    def _conn(self, index: int) -> _Conn:
        conn = self._conns.get(index)
        if conn is None:
            endpoint = self.endpoints[index]
            if self._credentials is not None:
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
            try:
                result = await self._attempt(conn, call)
            except grpc.aio.AioRpcError as e:
                if e.code() in _UNREACHABLE and (idempotent or not was_ready):
                    failures.append((conn.endpoint.url, _reason(e, self.request_timeout)))
                    continue
                raise self._translate(what, conn, e) from None
            if index != self._current:
                log.info("etcd: switched to %s after %s", conn.endpoint.url, failures or "start")
                self._current = index
            return result, conn
        raise RegistryError(unreachable_message(failures))

    def _translate(self, what: str, conn: _Conn, error: grpc.aio.AioRpcError) -> RegistryError:
        url, code, details = conn.endpoint.url, error.code(), error.details() or ""
        if code == grpc.StatusCode.NOT_FOUND and "lease not found" in details:
            return LeaseLostError(f"etcd {what}: lease not found (expired or revoked)")
        if code in _UNREACHABLE:
            return RegistryError(
                f"etcd {what} at {url} failed: {_reason(error, self.request_timeout)}; "
                "the write may or may not have been applied"
            )
        return RegistryError(f"etcd {what} at {url} failed: {code.name}: {details}")

    # KVBackend --------------------------------------------------------------

    async def range(self, key: bytes, range_end: bytes | None = None) -> RangeResult:
        request = rpc.RangeRequest(key=key, range_end=range_end or b"")

        async def call(conn: _Conn) -> Any:
            return await conn.kv.Range(
                request, timeout=self.request_timeout, metadata=conn.metadata
            )

        response, _ = await self._rpc("range", call, idempotent=True)
        return RangeResult(response.header.revision, [_kv(kv) for kv in response.kvs])

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        request = rpc.TxnRequest(
            compare=[_compare(c) for c in compare],
            success=[_request_op(op) for op in success],
            failure=[_request_op(op) for op in failure],
        )

        async def call(conn: _Conn) -> Any:
            return await conn.kv.Txn(request, timeout=self.request_timeout, metadata=conn.metadata)

        repeatable = not compare and all(isinstance(op, Put | Get) for op in success)
        response, _ = await self._rpc("txn", call, idempotent=repeatable)
        results = [_op_result(r) for r in response.responses]
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
        async def call(conn: _Conn) -> int:
            stream = conn.lease.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]),
                timeout=self.request_timeout,
                metadata=conn.metadata,
            )
            try:
                response = await stream.read()
            finally:
                stream.cancel()
            if response is _EOF:
                return 0
            return int(response.TTL)

        ttl, _ = await self._rpc("lease_keepalive", call, idempotent=True)
        return ttl

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
            create_request=rpc.WatchCreateRequest(
                key=key, range_end=range_end, start_revision=start_revision
            )
        )
        done = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield create
            await done.wait()  # closing our side would end the stream

        async def call(conn: _Conn) -> tuple[Any, Any]:
            # "hasleader": etcd cancels the stream if its member loses the
            # cluster leader, instead of leaving us on a silent partition.
            stream = conn.watch.Watch(requests(), metadata=(*conn.metadata, ("hasleader", "true")))
            try:
                async with asyncio.timeout(self.request_timeout):
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
                if response is _EOF:
                    raise RegistryError(f"etcd at {url} closed the watch stream")
                if response.compact_revision:
                    yield WatchBatch(compact_revision=int(response.compact_revision))
                    return
                if response.canceled:
                    reason = response.cancel_reason or "no reason given"
                    raise RegistryError(f"etcd at {url} cancelled the watch: {reason}")
                if response.created:
                    yield WatchBatch(created=True)
                if response.events:
                    yield WatchBatch(events=[_event(e) for e in response.events])
                try:
                    response = await stream.read()
                except grpc.aio.AioRpcError as e:
                    reason = _reason(e, self.request_timeout)
                    raise RegistryError(f"watch stream from {url} broke: {reason}") from None
        finally:
            done.set()
            stream.cancel()


# protobuf <-> kv types ---------------------------------------------------------


def _kv(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key,
        value=kv.value,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        lease=kv.lease,
    )


def _event(event: Any) -> KVEvent:
    kind = EventType.DELETE if event.type == rpc.Event.DELETE else EventType.PUT
    return KVEvent(kind, _kv(event.kv))


def _compare(compare: Compare) -> Any:
    target, field = _TARGETS[compare.target]
    message = rpc.Compare(key=compare.key, result=rpc.Compare.EQUAL, target=target)
    setattr(message, field, compare.value)
    return message


def _request_op(op: Op) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(key=op.key, value=op.value, lease=op.lease))
    if isinstance(op, Delete):
        request = rpc.DeleteRangeRequest(key=op.key, range_end=op.range_end or b"")
        return rpc.RequestOp(request_delete_range=request)
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=op.key, range_end=op.range_end or b""))


def _op_result(response: Any) -> OpResult:
    kind = response.WhichOneof("response")
    if kind == "response_range":
        return OpResult(kvs=[_kv(kv) for kv in response.response_range.kvs])
    if kind == "response_delete_range":
        return OpResult(deleted=int(response.response_delete_range.deleted))
    return OpResult()
