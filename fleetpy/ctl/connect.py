"""Opening fleetctl's client: the API's gRPC client, or the registry in etcd.

Apart from fleetpy.ctl.client (the FleetClient protocol and the etcd driver) so
that a command over the API opens its client without loading the Registry
protocol and the snapshot types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetpy.ctl.common import Settings

if TYPE_CHECKING:
    from fleetpy.ctl.client import FleetClient, RegistryFactory
    from fleetpy.registry.base import Registry


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
        from fleetpy.ctl.client import EtcdDriver

        if registry_factory is None:
            return EtcdDriver(etcd_registry(settings))
        endpoints = settings.etcd_endpoint_list()
        return EtcdDriver(await registry_factory(endpoints, settings.etcd_key_prefix,
                                                 settings.request_timeout))
    if driver == "api":
        return _api_client(settings)
    raise ValueError(f'unrecognized driver "{settings.driver}" (choose api or etcd)')
