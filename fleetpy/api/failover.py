"""The channels of fleetctl's API client, one per endpoint, and failing over between them.

The order and the time each endpoint gets are decided in
:mod:`fleetpy.api.endpoints`. An attempt on one endpoint has two steps:

1. connect: wait until its channel is READY, up to the connect deadline. A
   channel that fails (refused, no route, TLS refused, no socket) or is not
   READY in time has sent nothing: the next endpoint is tried. The reason of a
   failed connection is gRPC's own, read by a probe call that never reaches a
   servicer (an unknown method).
2. call: the request, with what is left of the request timeout.

Channels keep HTTP/2 keepalive pings on open calls, so that a watch (a blocking
``start``) on a member that dies or freezes is cut within about
KEEPALIVE_TIME + KEEPALIVE_TIMEOUT and opened again on the next member.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from fleetpy.api.endpoints import (
    attempt_order,
    connect_deadline,
    may_fail_over,
    seconds,
    short_reason,
    tried_message,
)
from fleetpy.api.gen import fleet_pb2_grpc as pb_grpc
from fleetpy.api.transport import TlsFiles, client_credentials, explain, parse_endpoint
from fleetpy.registry.errors import RegistryError

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024 * 1024
KEEPALIVE_TIME = 4.0  # fleetd accepts pings this often (server.py: MIN_PING_INTERVAL)
KEEPALIVE_TIMEOUT = 4.0
ROUND_WITHOUT_TIMEOUT = 3.0  # connected(): one round over the members, --request-timeout=0
PROBE = "/fleetpy.failover.Probe/Connect"  # no such service: answered without a servicer
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", int(KEEPALIVE_TIME * 1000)),
    ("grpc.keepalive_timeout_ms", int(KEEPALIVE_TIMEOUT * 1000)),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_time_between_pings_ms", int(KEEPALIVE_TIME * 1000)),  # 5 min else
    ("grpc.http2.ping_timeout_ms", int(KEEPALIVE_TIMEOUT * 1000)),  # 60 s else
    # a member back (a restarted fleetd) is tried again within 1 s; gRPC's own
    # connect timeout stays its 20 s (min_reconnect_backoff_ms): ours is connect_deadline
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class Member:
    """One endpoint: its channel and stub."""

    def __init__(self, endpoint: str, tls: TlsFiles | None, target: str | None) -> None:
        self.endpoint = endpoint
        address, self.secure = parse_endpoint(endpoint)
        if self.secure:
            creds = client_credentials(tls or TlsFiles())
            self.channel = grpc.aio.secure_channel(target or address, creds,
                                                   options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.insecure_channel(target or address, options=CHANNEL_OPTIONS)
        self.stub: Any = pb_grpc.FleetStub(self.channel)  # type: ignore[no-untyped-call]

    async def connect(self, deadline: float | None) -> grpc.aio.AioRpcError | bool:
        """True: READY. False: not READY within ``deadline`` seconds. An error:
        the connection failed, and gRPC's words for why."""
        loop = asyncio.get_running_loop()
        until = None if deadline is None else loop.time() + deadline
        state = self.channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                         grpc.ChannelConnectivity.SHUTDOWN):
                return await self._why()
            left = None if until is None else until - loop.time()
            if left is not None and left <= 0:
                return False
            try:
                async with asyncio.timeout(left):
                    await self.channel.wait_for_state_change(state)
            except TimeoutError:
                return False
            state = self.channel.get_state(try_to_connect=True)
        return True

    async def _why(self) -> grpc.aio.AioRpcError | bool:
        probe = self.channel.unary_unary(PROBE, None, None)
        try:
            await probe(b"", timeout=1.0)
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return e
        return True  # it connected meanwhile: the server answered (UNIMPLEMENTED)


@dataclass
class Failure:
    """Why one endpoint failed: gRPC's error, or None for no connection in ``waited`` s."""

    member: Member
    error: grpc.aio.AioRpcError | None
    waited: float | None


class Members:
    """The endpoints of one client; ``current`` is the one that answered last."""

    def __init__(self, endpoints: Sequence[str], timeout: float | None,
                 tls: TlsFiles | None = None, target: str | None = None) -> None:
        if target is not None and len(endpoints) != 1:
            raise ValueError("a tunnel reaches one endpoint")
        self.members = [Member(e, tls, target) for e in endpoints]
        self.timeout = timeout
        self.tls = tls
        self.tunnelled = target is not None
        self.current = 0

    async def close(self) -> None:
        for m in self.members:
            await m.channel.close(None)

    async def _reachable(self, until: float | None,
                         failures: list[Failure]) -> AsyncGenerator[tuple[int, Member], None]:
        """The members that connect, in attempt order, each within its connect deadline
        (``until``: the loop time the request must end by); the others go to ``failures``."""
        loop = asyncio.get_running_loop()
        order = attempt_order(len(self.members), self.current)
        for n, index in enumerate(order):
            member = self.members[index]
            remaining = None if until is None else until - loop.time()
            deadline = connect_deadline(remaining, len(order) - n)
            connected = await member.connect(deadline)
            if connected is True:
                yield index, member
            else:
                error = connected if isinstance(connected, grpc.aio.AioRpcError) else None
                failures.append(Failure(member, error, deadline))

    async def call(self, method: str, request: Any, *, read: bool,
                   none_on: grpc.StatusCode | None = None) -> Any:
        """``method`` of the Fleet stub, failing over as the module docstring says;
        None when the server answers ``none_on`` (NOT_FOUND: no such unit)."""
        loop = asyncio.get_running_loop()
        until = None if self.timeout is None else loop.time() + self.timeout
        failures: list[Failure] = []
        async with aclosing(self._reachable(until, failures)) as reachable:
            async for index, member in reachable:
                remaining = None if until is None else max(until - loop.time(), 0.01)
                try:
                    response = await getattr(member.stub, method)(request, timeout=remaining)
                except grpc.aio.AioRpcError as e:
                    if none_on is not None and e.code() == none_on:
                        self._answered(index, failures)
                        return None
                    if not may_fail_over(True, e.code().name, read):
                        raise self.error(member, e) from None
                    failures.append(Failure(member, e, remaining))
                    continue
                self._answered(index, failures)
                return response
        raise self.unreachable(failures)

    async def connected(self) -> Member:
        """A member that is READY (for a stream), trying them in order; else RegistryError."""
        # a round ends even without a request timeout: a watch then tries them all again
        until = asyncio.get_running_loop().time() + (self.timeout or ROUND_WITHOUT_TIMEOUT)
        failures: list[Failure] = []
        async with aclosing(self._reachable(until, failures)) as reachable:
            async for index, member in reachable:
                self._answered(index, failures)
                return member
        raise self.unreachable(failures)

    def lost(self, member: Member) -> None:
        """A stream on ``member`` was cut: the next attempt starts with the next member."""
        index = self.members.index(member)
        if self.current == index:
            self.current = (index + 1) % len(self.members)

    def _answered(self, index: int, failures: list[Failure]) -> None:
        if index != self.current or failures:
            tried = ", ".join(f"{f.member.endpoint} ({self.reason(f)})" for f in failures)
            log.info("fleet API: using %s%s", self.members[index].endpoint,
                     f" after {tried}" if tried else "")
        self.current = index

    # -- messages --------------------------------------------------------------

    def reason(self, f: Failure) -> str:
        if f.error is None:
            return f"no answer within {seconds(f.waited)}" if f.waited is not None else "no answer"
        detail = f.error.details() or ""
        if f.error.code() == grpc.StatusCode.UNAVAILABLE:
            why = explain(detail, f.member.secure, self.tls)
            if why is not None:
                return why
        return short_reason(f.error.code().name, detail, f.waited)

    def unreachable(self, failures: list[Failure]) -> Exception:
        if len(failures) == 1:  # one endpoint: its own message, as before lists
            f = failures[0]
            if f.error is not None:
                return self.error(f.member, f.error)
            return RegistryError(
                f"the fleet API at {f.member.endpoint} did not answer within {self.timeout}s")
        return RegistryError(tried_message([(f.member.endpoint, self.reason(f))
                                            for f in failures]))

    def error(self, member: Member, e: grpc.aio.AioRpcError) -> Exception:
        """The error for a failed call on ``member`` (ValueError for bad input)."""
        code, detail = e.code(), e.details() or ""
        unavailable = code == grpc.StatusCode.UNAVAILABLE
        where = member.endpoint
        why = explain(detail, member.secure, self.tls) if unavailable else None
        if why is not None and self.tunnelled:  # the member's end refused, not a TLS matter
            why = ("the member did not connect the tunnel to it (is the ssh user in the "
                   "socket's group there? is fleetd running?)")
        if why is not None:
            return RegistryError(f"cannot use the fleet API at {where}: {why}")
        if unavailable and "ermission denied" in detail:
            return RegistryError(f"permission denied on the fleet API at {where} "
                                 "(run as root or as a member of the socket's group)")
        if unavailable and "ailed to connect" in detail:
            return RegistryError(
                f"cannot reach the fleet API at {where} (is fleetd running?): {detail}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return RegistryError(f"the fleet API at {where} did not answer within "
                                 f"{self.timeout}s")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return ValueError(detail)
        return RegistryError(f"fleet API at {where}: {detail or code.name}")
