"""How fleetctl talks to the cluster: the FleetClient protocol and its drivers.

- ``--driver api`` (default): fleetpy.api.client.ApiDriver, the gRPC client of
  fleetd's API (``unix:///var/run/fleet.sock`` or ``http://host:port``; a
  comma-separated list fails over from one to the next).
- ``--driver etcd``: :class:`EtcdDriver`, straight to the registry in etcd.

Both raise RegistryError when they cannot reach their endpoint; the message
names the endpoints tried. Heavy modules (grpc, etcd client) are imported only
when a client is opened (fleetpy.ctl.connect: ``open_client``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from fleetpy.api.snapshot import Snapshot, SnapshotSource, watch_snapshots
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.registry.base import Registry, UnitRecord

if TYPE_CHECKING:  # annotations only (no etcd client, no model parsing for list-units)
    from fleetpy.model.cordon import Cordon
    from fleetpy.model.metadata import MetadataChange
    from fleetpy.registry.unreadable import Unreadable

PAGE = 1000  # entries per page of the paged listings (etcd range limit, API message)


class FleetClient(SnapshotSource, Protocol):
    """What fleetctl needs: the user-facing half of the Registry, plus a watch."""

    async def close(self) -> None: ...

    async def create_unit(self, unit: UnitFile, desired: TargetState) -> bool: ...

    async def put_unit(self, unit: UnitFile, desired: TargetState) -> None: ...

    async def set_desired(self, name: str, desired: TargetState) -> bool: ...

    async def destroy_unit(self, name: str) -> bool: ...

    async def get_units(self, names: Sequence[str]) -> dict[str, UnitRecord | None]: ...

    async def create_units(
        self, units: Sequence[UnitFile], desired: TargetState
    ) -> dict[str, bool]: ...

    async def set_desired_many(
        self, names: Sequence[str], desired: TargetState
    ) -> dict[str, bool]: ...

    async def destroy_units(self, names: Sequence[str]) -> dict[str, bool]: ...

    async def set_machine_metadata(
        self, machine_id: str, change: MetadataChange
    ) -> Machine | None: ...

    async def put_cordon(self, cordon: Cordon) -> None: ...

    async def update_cordon(self, cordon: Cordon, expected: Cordon | None) -> bool: ...

    async def delete_cordon(self, machine_id: str) -> bool: ...

    async def list_cordons(self) -> dict[str, Cordon]: ...

    async def list_unreadable(self) -> list[Unreadable]:
        """Registry entries every reader skips, with what is wrong with each."""
        ...

    def watch_units(self, names: Sequence[str]) -> AsyncGenerator[Snapshot, None]:
        """A snapshot of ``names`` now, then after every change."""
        ...

    def machine_pages(self, page_size: int = PAGE) -> AsyncGenerator[list[Machine], None]:
        """Live machines by ID, a page at a time (list-machines: no whole copy)."""
        ...

    def unit_state_pages(
        self, machine_id: str | None = None, page_size: int = PAGE
    ) -> AsyncGenerator[list[UnitState], None]:
        """Reported unit states, a page at a time (list-units)."""
        ...


class EtcdDriver:
    """FleetClient over a Registry (``--driver etcd``)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def close(self) -> None:
        await self.registry.close()

    async def create_unit(self, unit: UnitFile, desired: TargetState) -> bool:
        return await self.registry.create_unit(unit, desired)

    async def put_unit(self, unit: UnitFile, desired: TargetState) -> None:
        await self.registry.put_unit(unit, desired)

    async def get_unit(self, name: str) -> UnitRecord | None:
        return await self.registry.get_unit(name)

    async def list_units(self) -> list[UnitRecord]:
        return await self.registry.list_units()

    async def set_desired(self, name: str, desired: TargetState) -> bool:
        return await self.registry.set_desired(name, desired)

    async def destroy_unit(self, name: str) -> bool:
        return await self.registry.destroy_unit(name)

    async def get_units(self, names: Sequence[str]) -> dict[str, UnitRecord | None]:
        return await self.registry.get_units(names)

    async def create_units(
        self, units: Sequence[UnitFile], desired: TargetState
    ) -> dict[str, bool]:
        return await self.registry.create_units(units, desired)

    async def set_desired_many(
        self, names: Sequence[str], desired: TargetState
    ) -> dict[str, bool]:
        return await self.registry.set_desired_many(names, desired)

    async def destroy_units(self, names: Sequence[str]) -> dict[str, bool]:
        return await self.registry.destroy_units(names)

    async def list_machines(self) -> list[Machine]:
        return await self.registry.list_machines()

    async def set_machine_metadata(
        self, machine_id: str, change: MetadataChange
    ) -> Machine | None:
        return await self.registry.set_machine_metadata(machine_id, change)

    def machine_pages(self, page_size: int = PAGE) -> AsyncGenerator[list[Machine], None]:
        return self.registry.machine_pages(page_size)

    def unit_state_pages(
        self, machine_id: str | None = None, page_size: int = PAGE
    ) -> AsyncGenerator[list[UnitState], None]:
        return self.registry.unit_state_pages(machine_id, page_size)

    async def list_unit_states(self, machine_id: str | None = None) -> list[UnitState]:
        return await self.registry.list_unit_states(machine_id)

    async def list_schedule(self, machine_id: str | None = None) -> list[ScheduledUnit]:
        return await self.registry.list_schedule(machine_id)

    async def put_cordon(self, cordon: Cordon) -> None:
        await self.registry.put_cordon(cordon)

    async def update_cordon(self, cordon: Cordon, expected: Cordon | None) -> bool:
        return await self.registry.update_cordon(cordon, expected)

    async def delete_cordon(self, machine_id: str) -> bool:
        return await self.registry.delete_cordon(machine_id)

    async def list_cordons(self) -> dict[str, Cordon]:
        return await self.registry.list_cordons()

    async def list_waiting(self) -> dict[str, str]:
        return await self.registry.list_waiting()

    async def list_unreadable(self) -> list[Unreadable]:
        return await self.registry.list_unreadable()

    def watch_units(self, names: Sequence[str]) -> AsyncGenerator[Snapshot, None]:
        return watch_snapshots(self.registry, list(names) or None)


RegistryFactory = Callable[[Sequence[str], str, float], Awaitable[Registry]]
