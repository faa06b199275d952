"""How fleetctl talks to the cluster: the FleetClient protocol and its drivers.

- ``--driver api`` (default): fleetpy.api.client.ApiDriver, the gRPC client of
  fleetd's API (``unix:///var/run/fleet.sock`` or ``http://host:port``).
- ``--driver etcd``: :class:`EtcdDriver`, straight to the registry in etcd.

Both raise RegistryError when they cannot reach their endpoint; the message
names the endpoints tried. Heavy modules (grpc, etcd client) are imported only
when a client is opened.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Protocol

from fleetpy.api.snapshot import Snapshot, SnapshotSource, watch_snapshots
from fleetpy.ctl.common import Settings
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
from fleetpy.registry.base import Registry, UnitRecord


class FleetClient(SnapshotSource, Protocol):
    """What fleetctl needs: the user-facing half of the Registry, plus a watch."""

    async def close(self) -> None: ...

    async def create_unit(self, unit: UnitFile, desired: TargetState) -> bool: ...

    async def put_unit(self, unit: UnitFile, desired: TargetState) -> None: ...

    async def set_desired(self, name: str, desired: TargetState) -> bool: ...

    async def destroy_unit(self, name: str) -> bool: ...

    def watch_units(self, names: Sequence[str]) -> AsyncGenerator[Snapshot, None]:
        """A snapshot of ``names`` now, then after every change."""
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

    async def list_machines(self) -> list[Machine]:
        return await self.registry.list_machines()

    async def list_unit_states(self, machine_id: str | None = None) -> list[UnitState]:
        return await self.registry.list_unit_states(machine_id)

    async def list_schedule(self, machine_id: str | None = None) -> list[ScheduledUnit]:
        return await self.registry.list_schedule(machine_id)

    async def list_waiting(self) -> dict[str, str]:
        return await self.registry.list_waiting()

    def watch_units(self, names: Sequence[str]) -> AsyncGenerator[Snapshot, None]:
        return watch_snapshots(self.registry, list(names) or None)


RegistryFactory = Callable[[Sequence[str], str, float], Awaitable[Registry]]


async def default_registry(endpoints: Sequence[str], prefix: str, timeout: float) -> Registry:
    """The real etcd registry (imported only for --driver etcd)."""
    from fleetpy.registry.etcd import EtcdRegistry

    return EtcdRegistry(list(endpoints), prefix, request_timeout=timeout)


async def open_client(
    settings: Settings, registry_factory: RegistryFactory | None = None
) -> FleetClient:
    """Open the client ``settings`` ask for. ValueError for a bad endpoint/driver."""
    driver = settings.driver.lower()
    if driver == "etcd":
        endpoints = settings.etcd_endpoint_list()
        factory = registry_factory or default_registry
        return EtcdDriver(await factory(endpoints, settings.etcd_key_prefix,
                                        settings.request_timeout))
    if driver == "api":
        from fleetpy.api.client import ApiDriver

        return ApiDriver(settings.endpoint, settings.request_timeout)
    raise ValueError(f'unrecognized driver "{settings.driver}" (choose api or etcd)')
