"""EtcdRegistry: the registry on etcd v3.

::

    registry = EtcdRegistry("http://172.17.8.1:4001,http://172.17.8.1:4002", "/fleetpy/")
    lease = await registry.grant_lease(30)          # refreshed every 10 s
    await registry.register_machine(machine, lease)
    async for update in registry.watch(codec.schedule_prefix(machine.id)):
        ...                                         # a reset first, then changes
    await registry.close()

Nothing connects before the first call. Calls raise RegistryError when etcd
cannot be reached (the message names every endpoint tried); watches and lease
keepalives retry on their own. The pieces: ``etcd_client`` (gRPC, endpoints,
failover), ``store`` (keys and transactions), ``watch`` (resumable watch),
``lease`` (keepalive), ``codec`` (values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from fleetpy.registry.base import DEFAULT_PREFIX, RegistryError
from fleetpy.registry.endpoints import DEFAULT_ENDPOINTS
from fleetpy.registry.etcd_client import EtcdClient
from fleetpy.registry.store import DEFAULT_MAX_TXN_OPS, KVRegistry


class EtcdSettings(Protocol):
    """The etcd part of fleetd's configuration (``fleetpy.config.Config``); "" = unset."""

    @property
    def etcd_servers(self) -> Sequence[str]: ...

    @property
    def etcd_key_prefix(self) -> str: ...

    @property
    def etcd_request_timeout(self) -> float: ...

    @property
    def etcd_cafile(self) -> str: ...

    @property
    def etcd_certfile(self) -> str: ...

    @property
    def etcd_keyfile(self) -> str: ...

    @property
    def etcd_username(self) -> str: ...

    @property
    def etcd_password(self) -> str: ...


class EtcdRegistry(KVRegistry):
    """A ``Registry`` on etcd v3 (see module docstring)."""

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINTS,
        prefix: str = DEFAULT_PREFIX,
        *,
        request_timeout: float = 1.0,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive_time: float = 10.0,
        keepalive_timeout: float = 5.0,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        client: EtcdClient | None = None,
    ) -> None:
        """``endpoints``: comma-separated client URLs or a list of them.

        ``request_timeout`` applies to each attempt of each call (fleet's
        etcd_request_timeout). TLS files and username/password are optional.
        ``keepalive_time``/``keepalive_timeout`` are the gRPC keepalive pings on
        open streams. ``max_txn_ops`` must not exceed etcd's --max-txn-ops.

        ``client``: run on this existing connection instead (the other
        connection arguments are ignored). Many registries can share one
        client (one gRPC channel; each keeps its own leases and watches over
        it); closing such a registry leaves the client open for the others.
        """
        if client is not None:
            self.client = client
            super().__init__(client, prefix, max_txn_ops=max_txn_ops, own_backend=False)
            return
        self.client = EtcdClient(
            endpoints,
            request_timeout=request_timeout,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            username=username,
            password=password,
            keepalive_time=keepalive_time,
            keepalive_timeout=keepalive_timeout,
        )
        super().__init__(self.client, prefix, max_txn_ops=max_txn_ops)
        self.client.identity = dataclasses.replace(self.client.identity,
                                                   scope=f"the key prefix {self.prefix}")

    @classmethod
    def from_config(cls, config: EtcdSettings) -> EtcdRegistry:
        """From fleet's configuration keys (etcd_servers, etcd_key_prefix, ...)."""
        return cls(
            list(config.etcd_servers),
            config.etcd_key_prefix,
            request_timeout=config.etcd_request_timeout,
            ca_file=config.etcd_cafile or None,
            cert_file=config.etcd_certfile or None,
            key_file=config.etcd_keyfile or None,
            username=config.etcd_username or None,
            password=config.etcd_password or None,
        )

    @classmethod
    async def connect(
        cls, endpoints: str | Sequence[str], prefix: str = DEFAULT_PREFIX, **options: Any
    ) -> EtcdRegistry:
        """Create and check that etcd answers (RegistryError naming the endpoints if not).

        ``options`` are the constructor's keyword arguments.
        """
        registry = cls(endpoints, prefix, **options)
        try:
            await registry.ping()
        except RegistryError:
            await registry.close()
            raise
        return registry

    async def ping(self) -> int:
        """Check that etcd answers; -> its current revision. Raises RegistryError."""
        return (await self.client.range(self.prefix.encode())).revision
