"""The gRPC API server: a thin adapter from fleetpy.v1.Fleet to a Registry.

fleetd calls :func:`start_api_server` with its registry and the addresses to
listen on (``unix:///var/run/fleet.sock`` and, when configured, ``host:port``).
Those addresses serve fleet's v1 HTTP API too: fleetpy.httpapi.front listens
on them and hands each gRPC connection to this server, which listens only on a
socket in a private directory. :class:`FleetService` joins the RPC families
(fleetpy.api.rpc_units, rpc_machines, rpc_state; shared plumbing in
fleetpy.api.rpc).

Bad input never reaches the registry and never becomes INTERNAL or UNKNOWN:
a request that does not decode as its message, an invalid unit name or file,
or a request over a limit (fleetpy.api.validation) is INVALID_ARGUMENT with
the reason; a message over MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED (gRPC's
own check, naming both sizes). Error messages are cut to MAX_DETAIL characters.
"""

from __future__ import annotations

import grp
import logging
import os
import ssl
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.gen import fleet_pb2_grpc as pb_grpc
from fleetpy.api.limits import MAX_REQUEST_BYTES
from fleetpy.api.rpc import decoding
from fleetpy.api.rpc_machines import MachineRpcs
from fleetpy.api.rpc_state import StateRpcs
from fleetpy.api.rpc_units import UnitRpcs
from fleetpy.api.transport import TlsFiles
from fleetpy.httpapi.pages import TOKEN_LIMIT
from fleetpy.registry.base import Registry

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


class FleetService(UnitRpcs, MachineRpcs, StateRpcs):
    """The fleetpy.v1.Fleet servicer over a Registry: its RPC families are in
    fleetpy.api.rpc_units, rpc_machines and rpc_state."""


def _unix_path(address: str) -> str | None:
    """The socket path of a ``unix:`` address, None for a TCP address."""
    if address.startswith("unix://"):
        path = address[len("unix://") :]
    elif address.startswith("unix:"):
        path = address[len("unix:") :]
    else:
        return None
    if not path.startswith("/"):
        raise ValueError(
            f"API address {address!r}: the socket path must be absolute "
            "(unix:///var/run/fleet.sock)"
        )
    return path


def _tcp_address(address: str) -> tuple[str, bool | None]:
    """-> (host:port, TLS?): True for https://, False for http://, None for neither."""
    tls: bool | None = None
    for scheme, secure in (("https://", True), ("http://", False), ("tcp://", None)):
        if address.startswith(scheme):
            address, tls = address[len(scheme) :], secure
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
    registry: Registry,
    listen: Sequence[str],
    tls: TlsFiles | None = None,
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
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.http2.min_ping_interval_without_data_ms", int(MIN_PING_INTERVAL * 1000)),
        ]
    )
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
    log.warning(
        "API listening on %s WITHOUT TLS: anyone who reaches it controls the "
        "cluster (labs only; set api_certfile and api_keyfile)",
        address,
    )
    return target, None


class _Handlers:
    """Stands in for the server to catch the generated code's method handlers."""

    handlers: dict[str, Any]  # method name -> grpc.RpcMethodHandler

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.handlers = dict(handlers)


def _add_service(service: FleetService, server: grpc.aio.Server) -> None:
    """add_FleetServicer_to_server, with requests decoded by rpc.decoding."""
    caught = _Handlers()
    pb_grpc.add_FleetServicer_to_server(service, caught)  # type: ignore[no-untyped-call]
    methods = pb.DESCRIPTOR.services_by_name["Fleet"].methods_by_name
    handlers = {
        name: handler._replace(
            request_deserializer=decoding(
                handler.request_deserializer, methods[name].input_type.name
            )
        )
        for name, handler in caught.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]
