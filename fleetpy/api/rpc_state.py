"""The Fleet servicer's cluster-state reads: unit states, the schedule, the
waiting and unreadable lists, the paged Stream* listings and the
WatchUnitStates stream of cluster snapshots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from fleetpy.api import convert
from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.rpc import RegistryServicer, page_size, refuse_malformed, streamed, unary
from fleetpy.api.snapshot import watch_snapshots
from fleetpy.api.validation import checked_machine_id, checked_names, short_detail
from fleetpy.registry.base import RegistryError


class StateRpcs(RegistryServicer):
    """ListUnitStates, StreamUnitStates, StreamMachines, ListSchedule, ListWaiting,
    ListUnreadable and WatchUnitStates."""

    @unary
    async def ListUnitStates(
        self, request: pb.ListUnitStatesRequest, context: Any
    ) -> pb.ListUnitStatesResponse:
        states = await self._registry.list_unit_states(
            checked_machine_id(request.machine_id) or None
        )
        return pb.ListUnitStatesResponse(states=[convert.state_msg_to_pb(s) for s in states])

    async def StreamUnitStates(
        self, request: pb.StreamUnitStatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ListUnitStatesResponse]:
        await refuse_malformed(request, context)
        try:
            machine_id = checked_machine_id(request.machine_id) if request.machine_id else None
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, short_detail(str(e)))
        pages = self._registry.unit_state_pages(machine_id, page_size(request.page_size))
        async for page in streamed(pages, context):
            yield pb.ListUnitStatesResponse(states=[convert.state_msg_to_pb(s) for s in page])

    async def StreamMachines(
        self, request: pb.StreamMachinesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ListMachinesResponse]:
        await refuse_malformed(request, context)
        pages = self._registry.machine_pages(page_size(request.page_size))
        async for page in streamed(pages, context):
            yield pb.ListMachinesResponse(machines=[convert.machine_to_pb(m) for m in page])

    @unary
    async def ListSchedule(
        self, request: pb.ListScheduleRequest, context: Any
    ) -> pb.ListScheduleResponse:
        units = await self._registry.list_schedule(checked_machine_id(request.machine_id) or None)
        return pb.ListScheduleResponse(units=[convert.scheduled_to_pb(u) for u in units])

    @unary
    async def ListWaiting(
        self, request: pb.ListWaitingRequest, context: Any
    ) -> pb.ListWaitingResponse:
        return pb.ListWaitingResponse(waiting=await self._registry.list_waiting())

    @unary
    async def ListUnreadable(
        self, request: pb.ListUnreadableRequest, context: Any
    ) -> pb.ListUnreadableResponse:
        entries = await self._registry.list_unreadable()
        return pb.ListUnreadableResponse(
            entries=[
                pb.UnreadableEntry(key=e.key, problem=e.problem, revision=e.revision)
                for e in entries
            ]
        )

    async def WatchUnitStates(
        self, request: pb.WatchUnitStatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ClusterSnapshot]:
        await refuse_malformed(request, context)
        try:
            names = checked_names(request.names) or None
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, short_detail(str(e)))
            return
        try:
            async for snap in watch_snapshots(self._registry, names):
                yield convert.snapshot_to_pb(snap)
        except RegistryError as e:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, short_detail(str(e) or type(e).__name__)
            )
