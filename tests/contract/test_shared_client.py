"""Many registries on one etcd connection (hollow machines run this way), on a real etcd."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from fleetpy.model.types import Machine
from fleetpy.registry.etcd import EtcdRegistry
from fleetpy.registry.etcd_client import KEEPALIVE_STREAMS, EtcdClient
from tests.fixtures.etcd import EtcdProcess

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(30)]


async def test_registries_share_one_client_and_keep_their_own_leases_and_watches(
    etcd_server: EtcdProcess, etcd_prefix: str
) -> None:
    client = EtcdClient([etcd_server.endpoint])
    regs = [EtcdRegistry(prefix=etcd_prefix, client=client) for _ in range(3)]
    try:
        assert all(r.client is client for r in regs)
        leases = [await r.grant_lease(5) for r in regs]
        assert len({lease.id for lease in leases}) == 3
        for i, (r, lease) in enumerate(zip(regs, leases, strict=True)):
            assert await r.register_machine(Machine(id=f"{i:032x}", public_ip=f"10.0.0.{i}"),
                                            lease)
        watch = regs[2].watch("machines/")
        first = await anext(watch)
        assert len(first.items) == 3
        # Closing one registry ends its leases' keepalives but not the shared connection.
        await regs[0].close()
        await leases[0].revoke()
        update = await asyncio.wait_for(anext(watch), 5)
        assert [e.key for e in update.events] == [f"machines/{0:032x}"]
        assert [m.id for m in await regs[1].list_machines()] == [f"{i:032x}" for i in (1, 2)]
        assert not client.closed
        assert leases[1].is_alive() and leases[2].is_alive()
        await watch.aclose()
    finally:
        for r in regs[1:]:
            with contextlib.suppress(Exception):
                await r.close()
        await client.close()


def _etcd_counter(endpoint: str, name: str, method: str) -> float:
    import re
    import urllib.request

    with urllib.request.urlopen(endpoint + "/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = re.compile(rf'^{name}\{{[^}}]*grpc_method="{method}"[^}}]*\}} (\S+)$')
    return sum(float(m[1]) for line in text.splitlines() if (m := pattern.match(line)))


async def test_many_leases_refresh_over_a_few_keepalive_streams(
    etcd_server: EtcdProcess, etcd_prefix: str
) -> None:
    client = EtcdClient([etcd_server.endpoint])
    regs = [EtcdRegistry(prefix=etcd_prefix, client=client) for _ in range(20)]
    streams = _etcd_counter(etcd_server.endpoint, "grpc_server_started_total", "LeaseKeepAlive")
    messages = _etcd_counter(etcd_server.endpoint, "grpc_server_msg_received_total",
                             "LeaseKeepAlive")
    try:
        leases = [await r.grant_lease(2) for r in regs]  # refreshed every 2/3 s
        await asyncio.sleep(1.6)  # two refreshes each
        assert all(lease.is_alive() for lease in leases)
        refreshed = _etcd_counter(etcd_server.endpoint, "grpc_server_msg_received_total",
                                  "LeaseKeepAlive") - messages
        opened = _etcd_counter(etcd_server.endpoint, "grpc_server_started_total",
                               "LeaseKeepAlive") - streams
        assert refreshed >= 20  # every lease refreshed...
        # ...as messages on long-lived streams (at most one per lease), not one per refresh
        assert 1 <= opened <= min(KEEPALIVE_STREAMS, len(regs)) < refreshed
    finally:
        for r in regs:
            with contextlib.suppress(Exception):
                await r.close()
        await client.close()
