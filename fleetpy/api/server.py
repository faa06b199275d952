"""The gRPC API server: a thin adapter from fleetpy.v1.Fleet to a Registry.

fleetd calls :func:`start_api_server` with its registry and the addresses to
listen on (``unix:///var/run/fleet.sock`` and, when configured, ``host:port``).
"""

from __future__ import annotations

import functools
import grp
import logging
import os
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio

from fleetpy.api import convert
from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.gen import fleet_pb2_grpc as pb_grpc
from fleetpy.api.snapshot import watch_snapshots
from fleetpy.api.transport import TlsFiles, server_credentials
from fleetpy.api.validation import checked_unit_file
from fleetpy.model.metadata import MetadataChange
from fleetpy.model.types import UnitFile
from fleetpy.registry.base import Registry, RegistryError

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
SOCKET_GROUP = "fleet"
MAX_MESSAGE = 64 * 1024 * 1024
DEFAULT_PAGE = 1000  # entries per message of the Stream* listings
MAX_PAGE = 5000

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


def _unary(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Map registry and validation failures to gRPC status codes."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await fn(self, request, context)
        except RegistryError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e) or type(e).__name__)
        except (convert.ConversionError, ValueError) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
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
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(e) or type(e).__name__)


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
        desired = convert.state_from_pb(request.desired)
        if not await self._registry.set_desired(request.name, desired):
            await self._not_found(context, request.name)
        return pb.SetDesiredResponse()

    @_unary
    async def DestroyUnit(
        self, request: pb.DestroyUnitRequest, context: Any
    ) -> pb.DestroyUnitResponse:
        if not await self._registry.destroy_unit(request.name):
            await self._not_found(context, request.name)
        return pb.DestroyUnitResponse()

    @_unary
    async def GetUnits(self, request: pb.GetUnitsRequest, context: Any) -> pb.GetUnitsResponse:
        found = await self._registry.get_units(list(request.names))
        return pb.GetUnitsResponse(
            units=[convert.record_to_pb(r) for r in found.values() if r is not None],
            missing=[n for n, r in found.items() if r is None])

    @_unary
    async def CreateUnits(
        self, request: pb.CreateUnitsRequest, context: Any
    ) -> pb.CreateUnitsResponse:
        units = [_checked_unit(f) for f in request.files]  # all checked before any write
        created = await self._registry.create_units(units, convert.state_from_pb(request.desired))
        return pb.CreateUnitsResponse(created=[n for n, ok in created.items() if ok])

    @_unary
    async def SetDesiredMany(
        self, request: pb.SetDesiredManyRequest, context: Any
    ) -> pb.SetDesiredManyResponse:
        done = await self._registry.set_desired_many(
            list(request.names), convert.state_from_pb(request.desired))
        return pb.SetDesiredManyResponse(missing=[n for n, ok in done.items() if not ok])

    @_unary
    async def DestroyUnits(
        self, request: pb.DestroyUnitsRequest, context: Any
    ) -> pb.DestroyUnitsResponse:
        gone = await self._registry.destroy_units(list(request.names))
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
        machine = await self._registry.set_machine_metadata(request.machine_id, change)
        if machine is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"machine {request.machine_id} is not in the cluster")
            raise AssertionError("unreachable")
        return pb.SetMachineMetadataResponse(machine=convert.machine_to_pb(machine))

    @_unary
    async def ListUnitStates(
        self, request: pb.ListUnitStatesRequest, context: Any
    ) -> pb.ListUnitStatesResponse:
        states = await self._registry.list_unit_states(request.machine_id or None)
        return pb.ListUnitStatesResponse(states=[convert.state_msg_to_pb(s) for s in states])

    async def StreamUnitStates(
        self, request: pb.StreamUnitStatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ListUnitStatesResponse]:
        pages = self._registry.unit_state_pages(request.machine_id or None,
                                                _page_size(request.page_size))
        async for page in _streamed(pages, context):
            yield pb.ListUnitStatesResponse(states=[convert.state_msg_to_pb(s) for s in page])

    async def StreamMachines(
        self, request: pb.StreamMachinesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ListMachinesResponse]:
        pages = self._registry.machine_pages(_page_size(request.page_size))
        async for page in _streamed(pages, context):
            yield pb.ListMachinesResponse(machines=[convert.machine_to_pb(m) for m in page])

    @_unary
    async def ListSchedule(
        self, request: pb.ListScheduleRequest, context: Any
    ) -> pb.ListScheduleResponse:
        units = await self._registry.list_schedule(request.machine_id or None)
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
        names = list(request.names) or None
        try:
            async for snap in watch_snapshots(self._registry, names):
                yield convert.snapshot_to_pb(snap)
        except RegistryError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e) or type(e).__name__)


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
    registry: Registry, listen: Sequence[str], tls: TlsFiles | None = None
) -> grpc.aio.Server:
    """Serve the Fleet API on every address in ``listen`` and return the started server.

    Addresses: ``unix:///path/to.sock`` (parent directory created, a stale
    socket replaced; created 0600 and then given mode 0660 and group
    ``fleet``) or TCP ``host:port``: TLS with ``tls`` (its cert and key; with
    its CA, client certificates signed by it are required), plain without
    (warned: labs only). ``https://host:port`` insists on TLS,
    ``http://host:port`` on plain. Raises ValueError for a malformed address or
    missing TLS files and RuntimeError when an address cannot be bound. Stop it
    with ``await server.stop(grace)``.
    """
    if not listen:
        raise ValueError("start_api_server: no address to listen on")
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ])
    pb_grpc.add_FleetServicer_to_server(FleetService(registry), server)  # type: ignore[no-untyped-call]
    sockets: list[str] = []
    for address in listen:
        path = _unix_path(address)
        try:
            if path is not None:
                _prepare_socket(path)
                sockets.append(path)
                old_umask = os.umask(0o177)  # no window in which others may connect
                try:
                    port = server.add_insecure_port(f"unix://{path}")
                finally:
                    os.umask(old_umask)
            else:
                port = _add_tcp(server, address, tls)
        except RuntimeError as e:
            raise RuntimeError(f"cannot listen on {address}: {e}") from e
        if path is None and port == 0:
            raise RuntimeError(f"cannot listen on {address}")
    await server.start()
    for path in sockets:
        _secure_socket(path)
    return server


def _add_tcp(server: grpc.aio.Server, address: str, tls: TlsFiles | None) -> int:
    target, want_tls = _tcp_address(address)
    have = tls is not None and bool(tls.cert_file)
    if want_tls and not have:
        raise ValueError(f"API address {address}: https needs api_certfile and api_keyfile")
    if have and want_tls is not False:
        assert tls is not None
        creds = server_credentials(tls.cert_file, tls.key_file, tls.ca_file)
        port = server.add_secure_port(target, creds)
        clients = "client certificates required" if tls.ca_file else "no client certificates"
        log.info("API listening on %s (TLS, %s)", address, clients)
        return port
    port = server.add_insecure_port(target)
    log.warning("API listening on %s WITHOUT TLS: anyone who reaches it controls the "
                "cluster (labs only; set api_certfile and api_keyfile)", address)
    return port
