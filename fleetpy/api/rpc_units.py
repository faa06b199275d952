"""The Fleet servicer's unit RPCs: create, put, get, list, set desired state and
destroy units, one at a time and in batches (every unit of a batch is checked
before anything is written)."""

from __future__ import annotations

from typing import Any

from fleetpy.api import convert
from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.rpc import RegistryServicer, checked_unit, unary
from fleetpy.api.validation import check_count, checked_names
from fleetpy.model.names import validate_unit_name


class UnitRpcs(RegistryServicer):
    """Units: CreateUnit, PutUnit, GetUnit, ListUnits, SetDesired, DestroyUnit and
    the batch forms GetUnits, CreateUnits, SetDesiredMany, DestroyUnits."""

    @unary
    async def CreateUnit(
        self, request: pb.CreateUnitRequest, context: Any
    ) -> pb.CreateUnitResponse:
        unit = checked_unit(request.file)
        desired = convert.state_from_pb(request.desired)
        return pb.CreateUnitResponse(created=await self._registry.create_unit(unit, desired))

    @unary
    async def PutUnit(self, request: pb.PutUnitRequest, context: Any) -> pb.PutUnitResponse:
        unit = checked_unit(request.file)
        await self._registry.put_unit(unit, convert.state_from_pb(request.desired))
        return pb.PutUnitResponse()

    @unary
    async def GetUnit(self, request: pb.GetUnitRequest, context: Any) -> pb.GetUnitResponse:
        validate_unit_name(request.name)
        record = await self._registry.get_unit(request.name)
        if record is None:
            await self._not_found(context, request.name)
            raise AssertionError("unreachable")
        return pb.GetUnitResponse(unit=convert.record_to_pb(record))

    @unary
    async def ListUnits(self, request: pb.ListUnitsRequest, context: Any) -> pb.ListUnitsResponse:
        records = await self._registry.list_units()
        return pb.ListUnitsResponse(units=[convert.record_to_pb(r) for r in records])

    @unary
    async def SetDesired(
        self, request: pb.SetDesiredRequest, context: Any
    ) -> pb.SetDesiredResponse:
        validate_unit_name(request.name)
        desired = convert.state_from_pb(request.desired)
        if not await self._registry.set_desired(request.name, desired):
            await self._not_found(context, request.name)
        return pb.SetDesiredResponse()

    @unary
    async def DestroyUnit(
        self, request: pb.DestroyUnitRequest, context: Any
    ) -> pb.DestroyUnitResponse:
        validate_unit_name(request.name)
        if not await self._registry.destroy_unit(request.name):
            await self._not_found(context, request.name)
        return pb.DestroyUnitResponse()

    @unary
    async def GetUnits(self, request: pb.GetUnitsRequest, context: Any) -> pb.GetUnitsResponse:
        found = await self._registry.get_units(checked_names(request.names))
        return pb.GetUnitsResponse(
            units=[convert.record_to_pb(r) for r in found.values() if r is not None],
            missing=[n for n, r in found.items() if r is None],
        )

    @unary
    async def CreateUnits(
        self, request: pb.CreateUnitsRequest, context: Any
    ) -> pb.CreateUnitsResponse:
        check_count(len(request.files))
        units = [checked_unit(f) for f in request.files]  # all checked before any write
        created = await self._registry.create_units(units, convert.state_from_pb(request.desired))
        return pb.CreateUnitsResponse(created=[n for n, ok in created.items() if ok])

    @unary
    async def SetDesiredMany(
        self, request: pb.SetDesiredManyRequest, context: Any
    ) -> pb.SetDesiredManyResponse:
        names = checked_names(request.names)
        done = await self._registry.set_desired_many(names, convert.state_from_pb(request.desired))
        return pb.SetDesiredManyResponse(missing=[n for n, ok in done.items() if not ok])

    @unary
    async def DestroyUnits(
        self, request: pb.DestroyUnitsRequest, context: Any
    ) -> pb.DestroyUnitsResponse:
        gone = await self._registry.destroy_units(checked_names(request.names))
        return pb.DestroyUnitsResponse(missing=[n for n, ok in gone.items() if not ok])
