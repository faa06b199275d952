"""The gRPC client of the Fleet API (fleetctl's default ``--driver api``).

It offers the same read/write methods as a Registry (the subset fleetctl uses)
plus ``watch_units``; transport failures raise RegistryError naming the
endpoints tried. Several endpoints (``http://a:49153,http://b:49153``) fail
over: fleetpy.api.endpoints says when, fleetpy.api.failover does it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import grpc
import grpc.aio

from fleetpy.api import convert
from fleetpy.api.endpoints import split_endpoints
from fleetpy.api.failover import Members
from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.limits import CLIENT_BATCH, CLIENT_BATCH_BYTES
from fleetpy.api.transport import TlsFiles, parse_endpoint
from fleetpy.concurrency import each
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.registry.errors import RegistryError

if TYPE_CHECKING:  # (fleetctl's list commands start without them)
    from fleetpy.api.snapshot import Snapshot
    from fleetpy.model.cordon import Cordon
    from fleetpy.model.metadata import MetadataChange
    from fleetpy.registry.base import UnitRecord
    from fleetpy.registry.unreadable import Unreadable

RECONNECT_DELAY = 0.5
# Requests that change nothing: tried on the next endpoint even after one that
# connected failed in transport (see fleetpy.api.endpoints.may_fail_over).
READS = frozenset({"GetUnit", "GetUnits", "ListUnits", "ListMachines", "ListUnitStates",
                   "ListSchedule", "ListWaiting", "ListUnreadable",
                   "ListCordons"})
_RETRY_STREAM = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
log = logging.getLogger(__name__)


BATCH = CLIENT_BATCH  # units per request of the many-units calls
BATCH_BYTES = CLIENT_BATCH_BYTES  # and bytes of names and contents per request
PAGE = 1000  # entries per message of the paged listings
IN_FLIGHT = 4  # such requests at once
T = TypeVar("T")


def _size(item: object) -> int:
    """Bytes an item adds to a request: a name, or a unit's name and contents."""
    if isinstance(item, UnitFile):
        return len(item.name) + len(item.contents.encode("utf-8", "surrogatepass")) + 64
    return len(str(item)) + 8


def _batches(items: Sequence[T]) -> list[Sequence[T]]:
    """Runs of at most BATCH items and BATCH_BYTES (the server's limits are well above)."""
    out: list[Sequence[T]] = []
    start, total = 0, 0
    for i, item in enumerate(items):
        n = _size(item)
        if i > start and (i - start >= BATCH or total + n > BATCH_BYTES):
            out.append(items[start:i])
            start, total = i, 0
        total += n
    if start < len(items):
        out.append(items[start:])
    return out


def grpc_target(endpoint: str) -> str:
    """``unix:///path``, ``http(s)://host:port`` or ``host:port`` -> a gRPC target."""
    return parse_endpoint(endpoint)[0]


class ApiDriver:
    """fleetctl's client over the Fleet gRPC API, on one endpoint or several
    (``a,b,c``: failover, see fleetpy.api.endpoints and fleetpy.api.failover)."""

    def __init__(
        self,
        endpoint: str | Sequence[str],
        request_timeout: float = 3.0,
        *,
        tls: TlsFiles | None = None,
        target: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """``tls`` for https:// endpoints; ``target`` dials another address than the
        endpoint's (a --tunnel's local socket); ``on_close`` runs after close()."""
        endpoints = split_endpoints(endpoint) if isinstance(endpoint, str) else list(endpoint)
        self.endpoint = ",".join(endpoints)
        self._timeout = request_timeout if request_timeout > 0 else None
        self._members = Members(endpoints, self._timeout, tls, target)
        self._on_close = on_close

    @property
    def endpoint_label(self) -> str:
        return self._members.members[0].endpoint

    @endpoint_label.setter
    def endpoint_label(self, label: str) -> None:
        """How the (single) endpoint is named in messages (a tunnel's)."""
        self._members.members[0].endpoint = label

    async def close(self) -> None:
        try:
            await self._members.close()
        finally:
            if self._on_close is not None:
                self._on_close()

    def _fail(self, e: grpc.aio.AioRpcError) -> NoReturn:
        raise self._members.error(self._members.members[self._members.current], e)

    async def _call(self, method: str, request: Any) -> Any:
        return await self._members.call(method, request, read=method in READS)

    async def _maybe(self, method: str, request: Any) -> Any:
        """Like _call, but NOT_FOUND is None."""
        return await self._members.call(method, request, read=method in READS,
                                        none_on=grpc.StatusCode.NOT_FOUND)

    async def create_unit(self, unit: UnitFile, desired: TargetState) -> bool:
        req = pb.CreateUnitRequest(
            file=convert.unit_file_to_pb(unit), desired=convert.state_to_pb(desired))
        resp: pb.CreateUnitResponse = await self._call("CreateUnit", req)
        return resp.created

    async def put_unit(self, unit: UnitFile, desired: TargetState) -> None:
        req = pb.PutUnitRequest(
            file=convert.unit_file_to_pb(unit), desired=convert.state_to_pb(desired))
        await self._call("PutUnit", req)

    async def get_unit(self, name: str) -> UnitRecord | None:
        resp = await self._maybe("GetUnit", pb.GetUnitRequest(name=name))
        return None if resp is None else convert.record_from_pb(resp.unit)

    async def list_units(self) -> list[UnitRecord]:
        resp: pb.ListUnitsResponse = await self._call("ListUnits", pb.ListUnitsRequest())
        return [convert.record_from_pb(u) for u in resp.units]

    async def set_desired(self, name: str, desired: TargetState) -> bool:
        req = pb.SetDesiredRequest(name=name, desired=convert.state_to_pb(desired))
        return await self._maybe("SetDesired", req) is not None

    async def destroy_unit(self, name: str) -> bool:
        req = pb.DestroyUnitRequest(name=name)
        return await self._maybe("DestroyUnit", req) is not None

    # Many units: one request per BATCH units (IN_FLIGHT at once), so that each
    # stays well within the request timeout; the server writes them in
    # transactions of 128.

    async def _batched(self, items: Sequence[T], call: Callable[[Sequence[T]], Any]) -> list[Any]:
        return await each(_batches(items), call, IN_FLIGHT)

    async def get_units(self, names: Sequence[str]) -> dict[str, UnitRecord | None]:
        found: dict[str, UnitRecord | None] = {}
        for resp in await self._batched(names, lambda chunk: self._call(
                "GetUnits", pb.GetUnitsRequest(names=list(chunk)))):
            found.update(dict.fromkeys(resp.missing))
            found.update((u.file.name, convert.record_from_pb(u)) for u in resp.units)
        return found

    async def create_units(
        self, units: Sequence[UnitFile], desired: TargetState
    ) -> dict[str, bool]:
        state = convert.state_to_pb(desired)
        created: set[str] = set()
        for resp in await self._batched(units, lambda chunk: self._call(
                "CreateUnits", pb.CreateUnitsRequest(
                    files=[convert.unit_file_to_pb(u) for u in chunk], desired=state))):
            created.update(resp.created)
        return {u.name: u.name in created for u in units}

    async def set_desired_many(
        self, names: Sequence[str], desired: TargetState
    ) -> dict[str, bool]:
        state = convert.state_to_pb(desired)
        missing: set[str] = set()
        for resp in await self._batched(names, lambda chunk: self._call(
                "SetDesiredMany",
                pb.SetDesiredManyRequest(names=list(chunk), desired=state))):
            missing.update(resp.missing)
        return {n: n not in missing for n in names}

    async def destroy_units(self, names: Sequence[str]) -> dict[str, bool]:
        missing: set[str] = set()
        for resp in await self._batched(names, lambda chunk: self._call(
                "DestroyUnits", pb.DestroyUnitsRequest(names=list(chunk)))):
            missing.update(resp.missing)
        return {n: n not in missing for n in names}

    async def list_machines(self) -> list[Machine]:
        resp: pb.ListMachinesResponse = await self._call(
            "ListMachines", pb.ListMachinesRequest())
        return [convert.machine_from_pb(m) for m in resp.machines]

    async def machine_pages(self, page_size: int = PAGE) -> AsyncGenerator[list[Machine], None]:
        """Live machines in pages (StreamMachines); one page from a fleetd without it."""
        pages = self._pages("StreamMachines", pb.StreamMachinesRequest(page_size=page_size),
                            "ListMachines", pb.ListMachinesRequest())
        async for msg in pages:
            yield [convert.machine_from_pb(m) for m in msg.machines]

    async def unit_state_pages(
        self, machine_id: str | None = None, page_size: int = PAGE
    ) -> AsyncGenerator[list[UnitState], None]:
        """Reported unit states in pages (StreamUnitStates); one page from an older fleetd."""
        request = pb.StreamUnitStatesRequest(machine_id=machine_id or "", page_size=page_size)
        older = pb.ListUnitStatesRequest(machine_id=machine_id or "")
        async for msg in self._pages("StreamUnitStates", request, "ListUnitStates", older):
            yield [convert.state_msg_from_pb(s) for s in msg.states]

    async def _pages(
        self, method: str, request: Any, unary: str, older: Any
    ) -> AsyncGenerator[Any, None]:
        """The messages of a server stream on the member that answers. A fleetd
        that does not have that stream (UNIMPLEMENTED), or a stream cut before its
        first message, gives way to the unary listing (which fails over as every
        read does); a stream cut after its first message is an error."""
        member = await self._members.connected()
        call = getattr(member.stub, method)(request, timeout=self._timeout)
        got = False
        try:
            async for msg in call:
                got = True
                yield msg
            return
        except grpc.aio.AioRpcError as e:
            if got or e.code() not in (grpc.StatusCode.UNIMPLEMENTED, *_RETRY_STREAM):
                raise self._members.error(member, e) from None
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                self._members.lost(member)
        finally:
            call.cancel()
        yield await self._call(unary, older)

    async def set_machine_metadata(
        self, machine_id: str, change: MetadataChange
    ) -> Machine | None:
        req = pb.SetMachineMetadataRequest(
            machine_id=machine_id, set=dict(change.set), remove=list(change.remove))
        resp = await self._maybe("SetMachineMetadata", req)
        return None if resp is None else convert.machine_from_pb(resp.machine)

    async def list_unit_states(self, machine_id: str | None = None) -> list[UnitState]:
        resp: pb.ListUnitStatesResponse = await self._call(
            "ListUnitStates", pb.ListUnitStatesRequest(machine_id=machine_id or ""))
        return [convert.state_msg_from_pb(s) for s in resp.states]

    async def list_schedule(self, machine_id: str | None = None) -> list[ScheduledUnit]:
        resp: pb.ListScheduleResponse = await self._call(
            "ListSchedule", pb.ListScheduleRequest(machine_id=machine_id or ""))
        return [convert.scheduled_from_pb(s) for s in resp.units]

    async def put_cordon(self, cordon: Cordon) -> None:
        await self._call("PutCordon", pb.PutCordonRequest(cordon=convert.cordon_to_pb(cordon)))

    async def update_cordon(self, cordon: Cordon, expected: Cordon | None) -> bool:
        request = pb.PutCordonRequest(cordon=convert.cordon_to_pb(cordon), compare=True)
        if expected is not None:
            request.expected.CopyFrom(convert.cordon_to_pb(expected))
        resp: pb.PutCordonResponse = await self._call("PutCordon", request)
        return resp.written

    async def delete_cordon(self, machine_id: str) -> bool:
        resp: pb.DeleteCordonResponse = await self._call(
            "DeleteCordon", pb.DeleteCordonRequest(machine_id=machine_id))
        return resp.existed

    async def list_cordons(self) -> dict[str, Cordon]:
        resp: pb.ListCordonsResponse = await self._call("ListCordons", pb.ListCordonsRequest())
        return {c.machine_id: convert.cordon_from_pb(c) for c in resp.cordons}

    async def list_waiting(self) -> dict[str, str]:
        resp: pb.ListWaitingResponse = await self._call(
            "ListWaiting", pb.ListWaitingRequest())
        return dict(resp.waiting)

    async def list_unreadable(self) -> list[Unreadable]:
        resp: pb.ListUnreadableResponse | None = await self._members.call(
            "ListUnreadable", pb.ListUnreadableRequest(), read=True,
            none_on=grpc.StatusCode.UNIMPLEMENTED)  # a fleetd from before ListUnreadable
        if resp is None:
            return []
        from fleetpy.registry.unreadable import Unreadable

        return [Unreadable(e.key, e.problem, e.revision) for e in resp.entries]

    async def watch_units(self, names: Sequence[str]) -> AsyncGenerator[Snapshot, None]:
        """Snapshots of ``names`` now and after every change (server-streamed).

        A stream that is cut (a restarting or dead fleetd, one that lost etcd,
        or no keepalive answer from a frozen member) is opened again, on the
        next endpoint first, or on the same one when it is the only one;
        rounds over every endpoint go on until the caller stops waiting.
        """
        request = pb.WatchUnitStatesRequest(names=list(names))
        while True:
            try:
                member = await self._members.connected()
            except RegistryError as e:
                log.debug("watch: no endpoint answers (%s), trying again", e)
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            call = member.stub.WatchUnitStates(request)
            try:
                async for msg in call:
                    yield convert.snapshot_from_pb(msg)
                return
            except grpc.aio.AioRpcError as e:
                if e.code() not in _RETRY_STREAM:
                    raise self._members.error(member, e) from None
                log.debug("watch on %s cut (%s), opening it again", member.endpoint,
                          e.details())
                self._members.lost(member)
            finally:
                call.cancel()
            await asyncio.sleep(RECONNECT_DELAY)
