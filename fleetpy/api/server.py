"""The gRPC API server: a thin adapter from fleetpy.v1.Fleet to a Registry.

fleetd calls :func:`start_api_server` with its registry and the addresses to
listen on (``unix:///var/run/fleet.sock`` and, when configured, ``host:port``).
Those addresses serve fleet's v1 HTTP API too: fleetpy.httpapi.front listens
on them and hands each gRPC connection to this server, which listens only on a
socket in a private directory.

Bad input never reaches the registry and never becomes INTERNAL or UNKNOWN:
a request that does not decode as its message, an invalid unit name or file,
or a request over a limit (fleetpy.api.validation) is INVALID_ARGUMENT with
the reason; a message over MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED (gRPC's
own check, naming both sizes). Error messages are cut to MAX_DETAIL characters.
"""

from __future__ import annotations

import functools
import grp
import logging
import os
import ssl
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio

from fleetpy.api import convert
from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.gen import fleet_pb2_grpc as pb_grpc
from fleetpy.api.limits import MAX_REQUEST_BYTES
from fleetpy.api.snapshot import watch_snapshots
from fleetpy.api.transport import TlsFiles
from fleetpy.api.validation import (
    check_count,
    checked_machine_id,
    checked_names,
    checked_unit_file,
    short_detail,
)
from fleetpy.httpapi.pages import TOKEN_LIMIT
from fleetpy.model.metadata import MetadataChange
from fleetpy.model.names import validate_unit_name
from fleetpy.model.types import UnitFile
from fleetpy.registry.base import Registry, RegistryError

if TYPE_CHECKING:
    from fleetpy.httpapi.front import ApiServer

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
SOCKET_GROUP = "fleet"
MAX_MESSAGE = 64 * 1024 * 1024  # what the server sends (a list of many units)
SERVICE = "fleetpy.v1.Fleet"
# fleetctl pings an open watch every few seconds (fleetpy.api.failover) to find a
# dead member; gRPC's default would answer pings more often than every 5 min with GOAWAY.
MIN_PING_INTERVAL = 2.0
DEFAULT_PAGE = 1000  # entries per message of the Stream* listings
MAX_PAGE = 5000

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


class Malformed:
    """A request whose bytes do not decode as the method's message (see _decoding)."""

    def __init__(self, message: str, problem: str) -> None:
        self.reason = f"malformed {message}: {problem}"


def _decoding(decode: Callable[[bytes], Any], message: str) -> Callable[[bytes], Any]:
    """``decode``, giving a Malformed request instead of raising (grpc would say UNKNOWN)."""

    def lenient(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as e:  # protobuf's DecodeError, or anything its parser raises
            return Malformed(message, str(e) or type(e).__name__)

    return lenient


async def _refuse_malformed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if isinstance(request, Malformed):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, short_detail(request.reason))


def _unary(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Map registry and validation failures to gRPC status codes."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        await _refuse_malformed(request, context)
        try:
            return await fn(self, request, context)
        except RegistryError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                short_detail(str(e) or type(e).__name__))
        except (convert.ConversionError, ValueError) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, short_detail(str(e)))
        raise AssertionError("unreachable")  # context.abort raises

    return wrapper


def _checked_unit(msg: pb.UnitFile) -> UnitFile:
    """The unit as the model builds it: a bad name or file is INVALID_ARGUMENT."""
    unit, _ = checked_unit_file(msg.name, msg.contents)
    if msg.hash and msg.hash != unit.hash:
        raise ValueError(f"unit {msg.name}: hash {msg.hash} does not match its contents")
    return unit


def _page_size(asked: int) -> int:
    """A stream's page size: the default for 0, at most MAX_PAGE."""
    return min(asked, MAX_PAGE) if asked else DEFAULT_PAGE


async def _streamed(
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


class FleetService(pb_grpc.FleetServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def _not_found(self, context: grpc.aio.ServicerContext[Any, Any], name: str) -> None:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"Unit {name} not found")

    @_unary
    async def CreateUnit(
        self, request: pb.CreateUnitRequest, context: Any
    ) -> pb.CreateUnitResponse:
        unit = _checked_unit(request.file)
        desired = convert.state_from_pb(request.desired)
        return pb.CreateUnitResponse(created=await self._registry.create_unit(unit, desired))

    @_unary
    async def PutUnit(self, request: pb.PutUnitRequest, context: Any) -> pb.PutUnitResponse:
        unit = _checked_unit(request.file)
        await self._registry.put_unit(unit, convert.state_from_pb(request.desired))
        return pb.PutUnitResponse()

    @_unary
    async def GetUnit(self, request: pb.GetUnitRequest, context: Any) -> pb.GetUnitResponse:
        validate_unit_name(request.name)
        record = await self._registry.get_unit(request.name)
        if record is None:
            await self._not_found(context, request.name)
            raise AssertionError("unreachable")
        return pb.GetUnitResponse(unit=convert.record_to_pb(record))

    @_unary
    async def ListUnits(self, request: pb.ListUnitsRequest, context: Any) -> pb.ListUnitsResponse:
        records = await self._registry.list_units()
        return pb.ListUnitsResponse(units=[convert.record_to_pb(r) for r in records])

    @_unary
    async def SetDesired(
        self, request: pb.SetDesiredRequest, context: Any
    ) -> pb.SetDesiredResponse:
        validate_unit_name(request.name)
        desired = convert.state_from_pb(request.desired)
        if not await self._registry.set_desired(request.name, desired):
            await self._not_found(context, request.name)
        return pb.SetDesiredResponse()

    @_unary
    async def DestroyUnit(
        self, request: pb.DestroyUnitRequest, context: Any
    ) -> pb.DestroyUnitResponse:
        validate_unit_name(request.name)
        if not await self._registry.destroy_unit(request.name):
            await self._not_found(context, request.name)
        return pb.DestroyUnitResponse()

    @_unary
    async def GetUnits(self, request: pb.GetUnitsRequest, context: Any) -> pb.GetUnitsResponse:
        found = await self._registry.get_units(checked_names(request.names))
        return pb.GetUnitsResponse(
            units=[convert.record_to_pb(r) for r in found.values() if r is not None],
            missing=[n for n, r in found.items() if r is None])

    @_unary
    async def CreateUnits(
        self, request: pb.CreateUnitsRequest, context: Any
    ) -> pb.CreateUnitsResponse:
        check_count(len(request.files))
        units = [_checked_unit(f) for f in request.files]  # all checked before any write
        created = await self._registry.create_units(units, convert.state_from_pb(request.desired))
        return pb.CreateUnitsResponse(created=[n for n, ok in created.items() if ok])

    @_unary
    async def SetDesiredMany(
        self, request: pb.SetDesiredManyRequest, context: Any
    ) -> pb.SetDesiredManyResponse:
        names = checked_names(request.names)
        done = await self._registry.set_desired_many(
            names, convert.state_from_pb(request.desired))
        return pb.SetDesiredManyResponse(missing=[n for n, ok in done.items() if not ok])

    @_unary
    async def DestroyUnits(
        self, request: pb.DestroyUnitsRequest, context: Any
    ) -> pb.DestroyUnitsResponse:
        gone = await self._registry.destroy_units(checked_names(request.names))
        return pb.DestroyUnitsResponse(missing=[n for n, ok in gone.items() if not ok])

    @_unary
    async def ListMachines(
        self, request: pb.ListMachinesRequest, context: Any
    ) -> pb.ListMachinesResponse:
        machines = await self._registry.list_machines()
        return pb.ListMachinesResponse(machines=[convert.machine_to_pb(m) for m in machines])

    @_unary
    async def SetMachineMetadata(
        self, request: pb.SetMachineMetadataRequest, context: Any
    ) -> pb.SetMachineMetadataResponse:
        change = MetadataChange.make(dict(request.set), list(request.remove))
        machine = await self._registry.set_machine_metadata(
            checked_machine_id(request.machine_id), change)
        if machine is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"machine {request.machine_id} is not in the cluster")
            raise AssertionError("unreachable")
        return pb.SetMachineMetadataResponse(machine=convert.machine_to_pb(machine))

    @_unary
    async def PutCordon(
        self, request: pb.PutCordonRequest, context: Any
    ) -> pb.PutCordonResponse:
        cordon = convert.cordon_from_pb(request.cordon)
        checked_machine_id(cordon.machine_id)
        if not cordon.machine_id:
            raise ValueError("invalid machine ID: empty")
        if not request.compare:
            await self._registry.put_cordon(cordon)
            return pb.PutCordonResponse(written=True)
        expected = (convert.cordon_from_pb(request.expected)
                    if request.HasField("expected") else None)
        return pb.PutCordonResponse(
            written=await self._registry.update_cordon(cordon, expected))

    @_unary
    async def DeleteCordon(
        self, request: pb.DeleteCordonRequest, context: Any
    ) -> pb.DeleteCordonResponse:
        machine_id = checked_machine_id(request.machine_id)
        if not machine_id:
            raise ValueError("invalid machine ID: empty")
        return pb.DeleteCordonResponse(existed=await self._registry.delete_cordon(machine_id))

    @_unary
    async def ListCordons(
        self, request: pb.ListCordonsRequest, context: Any
    ) -> pb.ListCordonsResponse:
        cordons = await self._registry.list_cordons()
        return pb.ListCordonsResponse(
            cordons=[convert.cordon_to_pb(c) for _, c in sorted(cordons.items())])

    @_unary
    async def ListUnitStates(
        self, request: pb.ListUnitStatesRequest, context: Any
    ) -> pb.ListUnitStatesResponse:
        states = await self._registry.list_unit_states(
            checked_machine_id(request.machine_id) or None)
        return pb.ListUnitStatesResponse(states=[convert.state_msg_to_pb(s) for s in states])

    async def StreamUnitStates(
        self, request: pb.StreamUnitStatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ListUnitStatesResponse]:
        await _refuse_malformed(request, context)
        try:
            machine_id = checked_machine_id(request.machine_id) if request.machine_id else None
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, short_detail(str(e)))
        pages = self._registry.unit_state_pages(machine_id, _page_size(request.page_size))
        async for page in _streamed(pages, context):
            yield pb.ListUnitStatesResponse(states=[convert.state_msg_to_pb(s) for s in page])

    async def StreamMachines(
        self, request: pb.StreamMachinesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ListMachinesResponse]:
        await _refuse_malformed(request, context)
        pages = self._registry.machine_pages(_page_size(request.page_size))
        async for page in _streamed(pages, context):
            yield pb.ListMachinesResponse(machines=[convert.machine_to_pb(m) for m in page])

    @_unary
    async def ListSchedule(
        self, request: pb.ListScheduleRequest, context: Any
    ) -> pb.ListScheduleResponse:
        units = await self._registry.list_schedule(
            checked_machine_id(request.machine_id) or None)
        return pb.ListScheduleResponse(units=[convert.scheduled_to_pb(u) for u in units])

    @_unary
    async def ListWaiting(
        self, request: pb.ListWaitingRequest, context: Any
    ) -> pb.ListWaitingResponse:
        return pb.ListWaitingResponse(waiting=await self._registry.list_waiting())

    @_unary
    async def ListUnreadable(
        self, request: pb.ListUnreadableRequest, context: Any
    ) -> pb.ListUnreadableResponse:
        entries = await self._registry.list_unreadable()
        return pb.ListUnreadableResponse(entries=[
            pb.UnreadableEntry(key=e.key, problem=e.problem, revision=e.revision)
            for e in entries
        ])

    async def WatchUnitStates(
        self, request: pb.WatchUnitStatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ClusterSnapshot]:
        await _refuse_malformed(request, context)
        try:
            names = checked_names(request.names) or None
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, short_detail(str(e)))
            return
        try:
            async for snap in watch_snapshots(self._registry, names):
                yield convert.snapshot_to_pb(snap)
        except RegistryError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                short_detail(str(e) or type(e).__name__))


def _unix_path(address: str) -> str | None:
    """The socket path of a ``unix:`` address, None for a TCP address."""
    if address.startswith("unix://"):
        path = address[len("unix://"):]
    elif address.startswith("unix:"):
        path = address[len("unix:"):]
    else:
        return None
    if not path.startswith("/"):
        raise ValueError(f"API address {address!r}: the socket path must be absolute "
                         "(unix:///var/run/fleet.sock)")
    return path


def _tcp_address(address: str) -> tuple[str, bool | None]:
    """-> (host:port, TLS?): True for https://, False for http://, None for neither."""
    tls: bool | None = None
    for scheme, secure in (("https://", True), ("http://", False), ("tcp://", None)):
        if address.startswith(scheme):
            address, tls = address[len(scheme):], secure
    address = address.rstrip("/")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"API address {address!r}: expected host:port or unix:///path")
    return (address if host else f"[::]:{port}"), tls


def _prepare_socket(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"API socket {path} exists and is not a socket")
    os.unlink(path)  # stale socket of a previous fleetd


def _socket_group() -> int | None:
    try:
        return grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        return None


def _secure_socket(path: str) -> None:
    """0660, group ``fleet`` when it exists (else root's); logged once."""
    gid = _socket_group()
    os.chmod(path, SOCKET_MODE)
    if gid is not None:
        os.chown(path, -1, gid)
    group = SOCKET_GROUP if gid is not None else f"{os.getegid()} (no group {SOCKET_GROUP})"
    log.info("API socket %s: mode %o, group %s", path, SOCKET_MODE, group)


async def start_api_server(
    registry: Registry, listen: Sequence[str], tls: TlsFiles | None = None,
    token_limit: int = TOKEN_LIMIT,
) -> ApiServer:
    """Serve the Fleet API on every address in ``listen`` and return the started server.

    Each address serves fleetpy's gRPC API and fleet's v1 HTTP API alike
    (fleetpy.httpapi.front tells them apart per connection; ``token_limit`` is
    the HTTP API's page size). Addresses: ``unix:///path/to.sock`` (parent
    directory created, a stale socket replaced; created 0600 and then given mode
    0660 and group ``fleet``) or TCP ``host:port``: TLS with ``tls`` (its cert
    and key; with its CA, client certificates signed by it are required), plain
    without (warned: labs only). ``https://host:port`` insists on TLS,
    ``http://host:port`` on plain. Raises ValueError for a malformed address or
    missing TLS files and RuntimeError when an address cannot be bound. Stop it
    with ``await server.stop(grace)``.
    """
    from fleetpy.httpapi import front
    from fleetpy.httpapi.resources import Resources

    if not listen:
        raise ValueError("start_api_server: no address to listen on")
    plan: list[tuple[str, str | None, tuple[str, ssl.SSLContext | None] | None]] = []
    for address in listen:  # every address checked before anything is bound
        path = _unix_path(address)
        plan.append((address, path, None if path is not None else _tcp_plan(address, tls)))
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.http2.min_ping_interval_without_data_ms", int(MIN_PING_INTERVAL * 1000)),
    ])
    _add_service(FleetService(registry), server)
    near = next((path for _, path, _ in plan if path is not None), None)
    api = front.ApiServer(server, front.private_grpc_dir(near), Resources(registry, token_limit))
    server.add_insecure_port(f"unix://{api.grpc_path}")
    await server.start()
    sockets: list[str] = []
    try:
        for address, path, tcp in plan:
            try:
                if path is not None:
                    _prepare_socket(path)
                    await front.listen_unix(api, path)
                    sockets.append(path)
                else:
                    assert tcp is not None
                    await front.listen_tcp(api, *tcp)
            except OSError as e:
                raise RuntimeError(f"cannot listen on {address}: {e.strerror or e}") from e
    except BaseException:
        await front.close_on_error(api, listen)
        raise
    for path in sockets:
        _secure_socket(path)
    return api


def _tcp_plan(address: str, tls: TlsFiles | None) -> tuple[str, ssl.SSLContext | None]:
    """-> (host:port, TLS context or None), logged; ValueError for a bad address or TLS."""
    from fleetpy.httpapi.front import tls_context

    target, want_tls = _tcp_address(address)
    have = tls is not None and bool(tls.cert_file)
    if want_tls and not have:
        raise ValueError(f"API address {address}: https needs api_certfile and api_keyfile")
    if have and want_tls is not False:
        assert tls is not None
        ctx = tls_context(tls)
        clients = "client certificates required" if tls.ca_file else "no client certificates"
        log.info("API listening on %s (TLS, %s)", address, clients)
        return target, ctx
    log.warning("API listening on %s WITHOUT TLS: anyone who reaches it controls the "
                "cluster (labs only; set api_certfile and api_keyfile)", address)
    return target, None


class _Handlers:
    """Stands in for the server to catch the generated code's method handlers."""

    handlers: dict[str, Any]  # method name -> grpc.RpcMethodHandler

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.handlers = dict(handlers)


def _add_service(service: FleetService, server: grpc.aio.Server) -> None:
    """add_FleetServicer_to_server, with requests decoded by _decoding."""
    caught = _Handlers()
    pb_grpc.add_FleetServicer_to_server(service, caught)  # type: ignore[no-untyped-call]
    methods = pb.DESCRIPTOR.services_by_name["Fleet"].methods_by_name
    handlers = {
        name: handler._replace(request_deserializer=_decoding(
            handler.request_deserializer, methods[name].input_type.name))
        for name, handler in caught.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]
