"""The gRPC client of the Fleet API (fleetctl's default ``--driver api``).

It offers the same read/write methods as a Registry (the subset fleetctl uses)
plus ``watch_units``; transport failures raise RegistryError naming the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import grpc
import grpc.aio

from fleetpy.api import convert
from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.gen import fleet_pb2_grpc as pb_grpc
from fleetpy.api.snapshot import Snapshot
from fleetpy.api.transport import TlsFiles, client_credentials, explain, parse_endpoint
from fleetpy.concurrency import each
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.registry.base import RegistryError, UnitRecord

if TYPE_CHECKING:
    from fleetpy.model.metadata import MetadataChange
    from fleetpy.registry.unreadable import Unreadable

MAX_MESSAGE = 64 * 1024 * 1024
RECONNECT_DELAY = 0.5
_RETRY_STREAM = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
log = logging.getLogger(__name__)


BATCH = 1000  # units per request of the many-units calls
PAGE = 1000  # entries per message of the paged listings
IN_FLIGHT = 4  # such requests at once
T = TypeVar("T")


def _batches(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def grpc_target(endpoint: str) -> str:
    """``unix:///path``, ``http(s)://host:port`` or ``host:port`` -> a gRPC target."""
    return parse_endpoint(endpoint)[0]


class ApiDriver:
    """fleetctl's client over the Fleet gRPC API."""

    def __init__(
        self,
        endpoint: str,
        request_timeout: float = 3.0,
        *,
        tls: TlsFiles | None = None,
        target: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """``tls`` for https:// endpoints; ``target`` dials another address than the
        endpoint's (a --tunnel's local socket); ``on_close`` runs after close()."""
        self.endpoint = endpoint
        self._timeout = request_timeout if request_timeout > 0 else None
        address, self._secure = parse_endpoint(endpoint)
        self._tls = tls
        self._tunnelled = target is not None
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
        if self._secure:
            creds = client_credentials(tls or TlsFiles())
            self._channel = grpc.aio.secure_channel(target or address, creds, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target or address, options=options)
        self._on_close = on_close
        self._stub = pb_grpc.FleetStub(self._channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        try:
            await self._channel.close(None)
        finally:
            if self._on_close is not None:
                self._on_close()

    def _fail(self, e: grpc.aio.AioRpcError) -> NoReturn:
        code, detail = e.code(), e.details() or ""
        unavailable = code == grpc.StatusCode.UNAVAILABLE
        why = explain(detail, self._secure, self._tls) if unavailable else None
        if why is not None and self._tunnelled:  # the member's end refused, not a TLS matter
            why = ("the member did not connect the tunnel to it (is the ssh user in the "
                   "socket's group there? is fleetd running?)")
        if why is not None:
            raise RegistryError(f"cannot use the fleet API at {self.endpoint}: {why}") from None
        if code == grpc.StatusCode.UNAVAILABLE and "ermission denied" in detail:
            raise RegistryError(
                f"permission denied on the fleet API at {self.endpoint} "
                "(run as root or as a member of the socket's group)"
            ) from None
        if code == grpc.StatusCode.UNAVAILABLE and "ailed to connect" in detail:
            raise RegistryError(
                f"cannot reach the fleet API at {self.endpoint} (is fleetd running?): {detail}"
            ) from None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise RegistryError(
                f"the fleet API at {self.endpoint} did not answer within {self._timeout}s"
            ) from None
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            raise ValueError(detail) from None
        raise RegistryError(f"fleet API at {self.endpoint}: {detail or code.name}") from None

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as e:
            self._fail(e)

    async def _maybe(self, method: Any, request: Any) -> Any:
        """Like _call, but NOT_FOUND is None."""
        try:
            return await method(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            self._fail(e)

    async def create_unit(self, unit: UnitFile, desired: TargetState) -> bool:
        req = pb.CreateUnitRequest(
            file=convert.unit_file_to_pb(unit), desired=convert.state_to_pb(desired))
        resp: pb.CreateUnitResponse = await self._call(self._stub.CreateUnit, req)
        return resp.created

    async def put_unit(self, unit: UnitFile, desired: TargetState) -> None:
        req = pb.PutUnitRequest(
            file=convert.unit_file_to_pb(unit), desired=convert.state_to_pb(desired))
        await self._call(self._stub.PutUnit, req)

    async def get_unit(self, name: str) -> UnitRecord | None:
        resp = await self._maybe(self._stub.GetUnit, pb.GetUnitRequest(name=name))
        return None if resp is None else convert.record_from_pb(resp.unit)

    async def list_units(self) -> list[UnitRecord]:
        resp: pb.ListUnitsResponse = await self._call(self._stub.ListUnits, pb.ListUnitsRequest())
        return [convert.record_from_pb(u) for u in resp.units]

    async def set_desired(self, name: str, desired: TargetState) -> bool:
        req = pb.SetDesiredRequest(name=name, desired=convert.state_to_pb(desired))
        return await self._maybe(self._stub.SetDesired, req) is not None

    async def destroy_unit(self, name: str) -> bool:
        req = pb.DestroyUnitRequest(name=name)
        return await self._maybe(self._stub.DestroyUnit, req) is not None

    # Many units: one request per BATCH units (IN_FLIGHT at once), so that each
    # stays well within the request timeout; the server writes them in
    # transactions of 128.

    async def _batched(self, items: Sequence[T], call: Callable[[Sequence[T]], Any]) -> list[Any]:
        return await each(_batches(items), call, IN_FLIGHT)

    async def get_units(self, names: Sequence[str]) -> dict[str, UnitRecord | None]:
        found: dict[str, UnitRecord | None] = {}
        for resp in await self._batched(names, lambda chunk: self._call(
                self._stub.GetUnits, pb.GetUnitsRequest(names=list(chunk)))):
            found.update(dict.fromkeys(resp.missing))
            found.update((u.file.name, convert.record_from_pb(u)) for u in resp.units)
        return found

    async def create_units(
        self, units: Sequence[UnitFile], desired: TargetState
    ) -> dict[str, bool]:
        state = convert.state_to_pb(desired)
        created: set[str] = set()
        for resp in await self._batched(units, lambda chunk: self._call(
                self._stub.CreateUnits, pb.CreateUnitsRequest(
                    files=[convert.unit_file_to_pb(u) for u in chunk], desired=state))):
            created.update(resp.created)
        return {u.name: u.name in created for u in units}

    async def set_desired_many(
        self, names: Sequence[str], desired: TargetState
    ) -> dict[str, bool]:
        state = convert.state_to_pb(desired)
        missing: set[str] = set()
        for resp in await self._batched(names, lambda chunk: self._call(
                self._stub.SetDesiredMany,
                pb.SetDesiredManyRequest(names=list(chunk), desired=state))):
            missing.update(resp.missing)
        return {n: n not in missing for n in names}

    async def destroy_units(self, names: Sequence[str]) -> dict[str, bool]:
        missing: set[str] = set()
        for resp in await self._batched(names, lambda chunk: self._call(
                self._stub.DestroyUnits, pb.DestroyUnitsRequest(names=list(chunk)))):
            missing.update(resp.missing)
        return {n: n not in missing for n in names}

    async def list_machines(self) -> list[Machine]:
        resp: pb.ListMachinesResponse = await self._call(
            self._stub.ListMachines, pb.ListMachinesRequest())
        return [convert.machine_from_pb(m) for m in resp.machines]

    async def machine_pages(self, page_size: int = PAGE) -> AsyncGenerator[list[Machine], None]:
        """Live machines in pages (StreamMachines); one page from a fleetd without it."""
        call = self._stub.StreamMachines(pb.StreamMachinesRequest(page_size=page_size),
                                         timeout=self._timeout)
        async for msg in self._pages(call, self._stub.ListMachines, pb.ListMachinesRequest()):
            yield [convert.machine_from_pb(m) for m in msg.machines]

    async def unit_state_pages(
        self, machine_id: str | None = None, page_size: int = PAGE
    ) -> AsyncGenerator[list[UnitState], None]:
        """Reported unit states in pages (StreamUnitStates); one page from an older fleetd."""
        call = self._stub.StreamUnitStates(
            pb.StreamUnitStatesRequest(machine_id=machine_id or "", page_size=page_size),
            timeout=self._timeout)
        older = pb.ListUnitStatesRequest(machine_id=machine_id or "")
        async for msg in self._pages(call, self._stub.ListUnitStates, older):
            yield [convert.state_msg_from_pb(s) for s in msg.states]

    async def _pages(self, call: Any, unary: Any, request: Any) -> AsyncGenerator[Any, None]:
        """The messages of a server stream; a fleetd that does not have that stream
        (UNIMPLEMENTED, before any message) is asked the unary way instead."""
        got = False
        try:
            async for msg in call:
                got = True
                yield msg
            return
        except grpc.aio.AioRpcError as e:
            if got or e.code() != grpc.StatusCode.UNIMPLEMENTED:
                self._fail(e)
        finally:
            call.cancel()
        yield await self._call(unary, request)

    async def set_machine_metadata(
        self, machine_id: str, change: MetadataChange
    ) -> Machine | None:
        req = pb.SetMachineMetadataRequest(
            machine_id=machine_id, set=dict(change.set), remove=list(change.remove))
        resp = await self._maybe(self._stub.SetMachineMetadata, req)
        return None if resp is None else convert.machine_from_pb(resp.machine)

    async def list_unit_states(self, machine_id: str | None = None) -> list[UnitState]:
        resp: pb.ListUnitStatesResponse = await self._call(
            self._stub.ListUnitStates, pb.ListUnitStatesRequest(machine_id=machine_id or ""))
        return [convert.state_msg_from_pb(s) for s in resp.states]

    async def list_schedule(self, machine_id: str | None = None) -> list[ScheduledUnit]:
        resp: pb.ListScheduleResponse = await self._call(
            self._stub.ListSchedule, pb.ListScheduleRequest(machine_id=machine_id or ""))
        return [convert.scheduled_from_pb(s) for s in resp.units]

    async def list_waiting(self) -> dict[str, str]:
        resp: pb.ListWaitingResponse = await self._call(
            self._stub.ListWaiting, pb.ListWaitingRequest())
        return dict(resp.waiting)

    async def list_unreadable(self) -> list[Unreadable]:
        try:
            resp: pb.ListUnreadableResponse = await self._stub.ListUnreadable(
                pb.ListUnreadableRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                return []  # a fleetd from before ListUnreadable
            self._fail(e)
        from fleetpy.registry.unreadable import Unreadable

        return [Unreadable(e.key, e.problem, e.revision) for e in resp.entries]

    async def watch_units(self, names: Sequence[str]) -> AsyncGenerator[Snapshot, None]:
        """Snapshots of ``names`` now and after every change (server-streamed).

        A stream cut by a restarting fleetd (or a registry outage) is opened
        again, waiting for the server to be back; the caller bounds the wait.
        """
        request = pb.WatchUnitStatesRequest(names=list(names))
        reconnecting = False
        while True:
            call = self._stub.WatchUnitStates(request, wait_for_ready=reconnecting)
            try:
                async for msg in call:
                    reconnecting = False
                    yield convert.snapshot_from_pb(msg)
                return
            except grpc.aio.AioRpcError as e:
                if e.code() not in _RETRY_STREAM:
                    self._fail(e)
                log.debug("watch on %s cut (%s), opening it again", self.endpoint, e.details())
                reconnecting = True
            finally:
                call.cancel()
            await asyncio.sleep(RECONNECT_DELAY)
