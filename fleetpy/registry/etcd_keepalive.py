"""Lease refreshes as messages on long-lived LeaseKeepAlive streams, as etcd's client does.

A refresh is one message on a long-lived bidirectional stream, answered by
one message naming the lease; there is no stream to open per refresh. Many
machines sharing one connection (hollow machines: hundreds of leases in one
process) thus cost etcd and the client a few streams (the client spreads
leases over KEEPALIVE_STREAMS of them), not hundreds of short ones opened
under load. A stream that breaks fails the refreshes waiting on
it (each raises the stream's error, an ``AioRpcError``, so that the caller's
failover applies) and the next refresh opens a new one.

Under load the stream must not collapse: a lease has at most one request in
flight (a refresh retried while one is pending waits for the same answer,
instead of queueing another behind thousands of stale ones), and a stream
that answered nothing for a whole timeout while refreshes waited is taken
for stuck and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
import grpc.aio
from aetcd import rpc

from fleetpy.registry.etcd_rpc import EOF


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)


class KeepaliveStream:
    """The keepalive stream of one connection (``lease_stub``, ``metadata``)."""

    def __init__(self, lease_stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._waiting: dict[int, list[asyncio.Future[int]]] = {}
        self._in_flight: set[int] = set()  # leases with a request sent, not yet answered
        self._last_answer = asyncio.get_running_loop().time()
        self.broken: grpc.aio.AioRpcError | None = None
        # Written by a task of ours (not a request iterator that gRPC consumes in a
        # task of its own: when the stream broke, that task was destroyed pending and
        # asyncio logged errors, hundreds of lines in an etcd outage).
        self._call = lease_stub.LeaseKeepAlive(metadata=metadata)
        self._reader = asyncio.create_task(self._read(), name="etcd-lease-keepalive-stream")
        self._writer = asyncio.create_task(self._write(), name="etcd-lease-keepalive-writes")

    async def _write(self) -> None:
        try:
            while True:
                lease_id = await self._queue.get()
                await self._call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
        except grpc.aio.AioRpcError as exc:
            self._break(exc)
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as exc:  # the call ended
            self._break(rpc_error(grpc.StatusCode.UNAVAILABLE, f"keepalive stream: {exc}"))

    async def _read(self) -> None:
        try:
            while True:
                response = await self._call.read()
                if response is EOF:
                    raise rpc_error(grpc.StatusCode.UNAVAILABLE, "keepalive stream closed")
                self._last_answer = asyncio.get_running_loop().time()
                self._in_flight.discard(int(response.ID))
                for future in self._waiting.pop(int(response.ID), []):
                    if not future.done():
                        future.set_result(int(response.TTL))
        except grpc.aio.AioRpcError as exc:
            self._break(exc)
        except asyncio.CancelledError:
            self._break(rpc_error(grpc.StatusCode.CANCELLED, "keepalive stream closed"))
            raise

    def _break(self, error: grpc.aio.AioRpcError) -> None:
        self.broken = error
        self._in_flight.clear()
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(error)
        self._waiting.clear()

    async def refresh(self, lease_id: int, timeout: float) -> int:
        """Refresh once: the lease's remaining TTL (<= 0 when etcd no longer knows it)."""
        if self.broken is not None:
            raise self.broken
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._waiting.setdefault(lease_id, []).append(future)
        if lease_id not in self._in_flight:
            self._in_flight.add(lease_id)
            self._queue.put_nowait(lease_id)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            if loop.time() - self._last_answer >= timeout:
                self._break(rpc_error(grpc.StatusCode.UNAVAILABLE,
                                      f"keepalive stream answered nothing for {timeout:g}s"))
                self._call.cancel()
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"lease keepalive not answered within {timeout:g}s") from None
        finally:
            waiting = self._waiting.get(lease_id)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiting[lease_id]

    async def close(self) -> None:
        self._call.cancel()
        self._reader.cancel()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
