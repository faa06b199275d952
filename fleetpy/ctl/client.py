"""How fleetctl talks to the cluster: the FleetClient protocol and its drivers.

- ``--driver api`` (default): fleetpy.api.client.ApiDriver, the gRPC client of
  fleetd's API (``unix:///var/run/fleet.sock`` or ``http://host:port``; a
  comma-separated list fails over from one to the next).
- ``--driver etcd``: :class:`EtcdDriver`, straight to the registry in etcd.

Both raise RegistryError when they cannot reach their endpoint; the message
names the endpoints tried. Heavy modules (grpc, etcd client) are imported only
when a client is opened.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from fleetpy.api.snapshot import Snapshot, SnapshotSource, watch_snapshots
from fleetpy.ctl.common import Settings
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


def etcd_registry(settings: Settings) -> Registry:
    """The real etcd registry with --ca-file/--cert-file/--key-file and etcd's user."""
    from fleetpy.registry.etcd import EtcdRegistry

    if settings.etcd_username and not settings.etcd_password:
        raise ValueError("--etcd-username needs a password: set FLEETCTL_ETCD_PASSWORD")
    return EtcdRegistry(
        settings.etcd_endpoint_list(),
        settings.etcd_key_prefix,
        request_timeout=settings.request_timeout,
        ca_file=settings.ca_file or None,
        cert_file=settings.cert_file or None,
        key_file=settings.key_file or None,
        username=settings.etcd_username or None,
        password=settings.etcd_password or None,
    )


def _tunnel_remote(endpoint: str) -> str:
    """What the member's end of the tunnel connects to: fleetd's socket, or host:port."""
    from fleetpy.api.transport import parse_endpoint

    target, secure = parse_endpoint(endpoint)
    if secure:
        raise ValueError("--tunnel reaches the API as the member does: use the default "
                         "unix:///var/run/fleet.sock or an http:// endpoint with it")
    return target.removeprefix("unix://")


def _api_client(settings: Settings) -> FleetClient:
    from fleetpy.api.client import ApiDriver
    from fleetpy.api.endpoints import split_endpoints
    from fleetpy.api.transport import TlsFiles
    from fleetpy.ctl.common import err

    tls = TlsFiles(settings.ca_file, settings.cert_file, settings.key_file)
    endpoints = split_endpoints(settings.endpoint)
    if not settings.tunnel:
        plain = [e for e in endpoints if e.startswith("http://")]
        if plain and not settings.plain_http_ok:
            err(f"fleetctl: warning: {', '.join(plain)} "
                f"{'is' if len(plain) == 1 else 'are'} plain HTTP without TLS: anyone on that "
                "network can read and change this cluster (labs only; use https://)")
        return ApiDriver(endpoints, settings.request_timeout, tls=tls)
    # One tunnel, to one member: --tunnel is also the jump host of fleetctl ssh,
    # and the endpoint is what the member itself dials (its own fleetd).
    if len(endpoints) > 1:
        raise ValueError("--tunnel reaches one endpoint from the member: give one --endpoint "
                         "(the default unix:///var/run/fleet.sock is the member's own fleetd)")
    from fleetpy.ctl.ssh import SshOptions
    from fleetpy.ctl.tunnel import Tunnel, TunnelError

    endpoint = endpoints[0]
    remote = _tunnel_remote(endpoint)
    tunnel = Tunnel(SshOptions.of(settings), remote)
    try:
        local = tunnel.open()
    except TunnelError as e:
        raise ValueError(str(e)) from None
    client = ApiDriver(endpoint, settings.request_timeout, target=f"unix://{local}",
                       on_close=tunnel.close)
    client.endpoint_label = f"{endpoint} (through the ssh tunnel to {settings.tunnel})"
    return client


async def open_client(
    settings: Settings, registry_factory: RegistryFactory | None = None
) -> FleetClient:
    """Open the client ``settings`` ask for. ValueError for a bad endpoint/driver."""
    driver = settings.driver.lower()
    if driver == "etcd":
        if settings.tunnel:
            raise ValueError("--tunnel works with --driver=api (fleetd's API on the member)")
        if registry_factory is None:
            return EtcdDriver(etcd_registry(settings))
        endpoints = settings.etcd_endpoint_list()
        return EtcdDriver(await registry_factory(endpoints, settings.etcd_key_prefix,
                                                 settings.request_timeout))
    if driver == "api":
        return _api_client(settings)
    raise ValueError(f'unrecognized driver "{settings.driver}" (choose api or etcd)')
