"""Shared plumbing of the Fleet servicer (fleetpy.api.server): how requests are
decoded and checked, and how failures become gRPC status codes.

A request whose bytes do not decode as its message becomes a :class:`Malformed`
(see :func:`decoding`) and is refused as INVALID_ARGUMENT; :func:`unary` maps a
registry failure to UNAVAILABLE and a validation failure to INVALID_ARGUMENT;
:func:`streamed` does the same for a stream's pages. :class:`RegistryServicer`
is the base of the servicer's RPC families (fleetpy.api.rpc_units,
rpc_machines, rpc_state): it holds the registry they serve.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import grpc
import grpc.aio

from fleetpy.api import convert
from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.gen import fleet_pb2_grpc as pb_grpc
from fleetpy.api.validation import checked_unit_file, short_detail
from fleetpy.model.types import UnitFile
from fleetpy.registry.base import Registry, RegistryError

DEFAULT_PAGE = 1000  # entries per message of the Stream* listings
MAX_PAGE = 5000

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


class Malformed:
    """A request whose bytes do not decode as the method's message (see decoding)."""

    def __init__(self, message: str, problem: str) -> None:
        self.reason = f"malformed {message}: {problem}"


def decoding(decode: Callable[[bytes], Any], message: str) -> Callable[[bytes], Any]:
    """``decode``, giving a Malformed request instead of raising (grpc would say UNKNOWN)."""

    def lenient(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as e:  # protobuf's DecodeError, or anything its parser raises
            return Malformed(message, str(e) or type(e).__name__)

    return lenient


async def refuse_malformed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if isinstance(request, Malformed):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, short_detail(request.reason))


def unary(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Map registry and validation failures to gRPC status codes."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        await refuse_malformed(request, context)
        try:
            return await fn(self, request, context)
        except RegistryError as e:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, short_detail(str(e) or type(e).__name__)
            )
        except (convert.ConversionError, ValueError) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, short_detail(str(e)))
        raise AssertionError("unreachable")  # context.abort raises

    return wrapper


def checked_unit(msg: pb.UnitFile) -> UnitFile:
    """The unit as the model builds it: a bad name or file is INVALID_ARGUMENT."""
    unit, _ = checked_unit_file(msg.name, msg.contents)
    if msg.hash and msg.hash != unit.hash:
        raise ValueError(f"unit {msg.name}: hash {msg.hash} does not match its contents")
    return unit


def page_size(asked: int) -> int:
    """A stream's page size: the default for 0, at most MAX_PAGE."""
    return min(asked, MAX_PAGE) if asked else DEFAULT_PAGE


async def streamed(
    pages: AsyncGenerator[list[T], None], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncGenerator[list[T], None]:
    """The registry's pages, one at a time; a registry failure is UNAVAILABLE."""
    try:
        async with aclosing(pages):
            async for page in pages:
                yield page
    except RegistryError as e:
        await context.abort(grpc.StatusCode.UNAVAILABLE, short_detail(str(e) or type(e).__name__))
    except ValueError as e:  # e.g. an invalid machine id: the request's fault
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, short_detail(str(e)))


class RegistryServicer(pb_grpc.FleetServicer):
    """The registry every RPC family of the servicer reads and writes."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def _not_found(self, context: grpc.aio.ServicerContext[Any, Any], name: str) -> None:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"Unit {name} not found")
