"""The Fleet servicer's machine RPCs: list machines, change a machine's
metadata, and put, delete and list cordons."""

from __future__ import annotations

from typing import Any

import grpc

from fleetpy.api import convert
from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.api.rpc import RegistryServicer, unary
from fleetpy.api.validation import checked_machine_id
from fleetpy.model.metadata import MetadataChange


class MachineRpcs(RegistryServicer):
    """Machines and cordons: ListMachines, SetMachineMetadata, PutCordon,
    DeleteCordon, ListCordons."""

    @unary
    async def ListMachines(
        self, request: pb.ListMachinesRequest, context: Any
    ) -> pb.ListMachinesResponse:
        machines = await self._registry.list_machines()
        return pb.ListMachinesResponse(machines=[convert.machine_to_pb(m) for m in machines])

    @unary
    async def SetMachineMetadata(
        self, request: pb.SetMachineMetadataRequest, context: Any
    ) -> pb.SetMachineMetadataResponse:
        change = MetadataChange.make(dict(request.set), list(request.remove))
        machine = await self._registry.set_machine_metadata(
            checked_machine_id(request.machine_id), change
        )
        if machine is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"machine {request.machine_id} is not in the cluster"
            )
            raise AssertionError("unreachable")
        return pb.SetMachineMetadataResponse(machine=convert.machine_to_pb(machine))

    @unary
    async def PutCordon(self, request: pb.PutCordonRequest, context: Any) -> pb.PutCordonResponse:
        cordon = convert.cordon_from_pb(request.cordon)
        checked_machine_id(cordon.machine_id)
        if not cordon.machine_id:
            raise ValueError("invalid machine ID: empty")
        if not request.compare:
            await self._registry.put_cordon(cordon)
            return pb.PutCordonResponse(written=True)
        expected = (
            convert.cordon_from_pb(request.expected) if request.HasField("expected") else None
        )
        return pb.PutCordonResponse(written=await self._registry.update_cordon(cordon, expected))

    @unary
    async def DeleteCordon(
        self, request: pb.DeleteCordonRequest, context: Any
    ) -> pb.DeleteCordonResponse:
        machine_id = checked_machine_id(request.machine_id)
        if not machine_id:
            raise ValueError("invalid machine ID: empty")
        return pb.DeleteCordonResponse(existed=await self._registry.delete_cordon(machine_id))

    @unary
    async def ListCordons(
        self, request: pb.ListCordonsRequest, context: Any
    ) -> pb.ListCordonsResponse:
        cordons = await self._registry.list_cordons()
        return pb.ListCordonsResponse(
            cordons=[convert.cordon_to_pb(c) for _, c in sorted(cordons.items())]
        )
