"""etcd only: a watch on a member that freezes (SIGSTOP: the connection stays open,
nothing answers) is cut by keepalive pings, so that the caller opens it again on
another member (fleetd's registry, fleetctl --driver etcd's blocking commands)."""

from __future__ import annotations

import asyncio

import pytest

from fleetpy.registry.base import RegistryError
from fleetpy.registry.etcd_client import EtcdClient
from tests.fixtures.etcd import EtcdProcess

pytestmark = pytest.mark.etcd

KEEPALIVE_TIME, KEEPALIVE_TIMEOUT = 5.0, 2.0  # etcd accepts pings every 5 s


async def test_a_watch_on_a_frozen_member_is_cut(fresh_etcd: EtcdProcess) -> None:
    client = EtcdClient(fresh_etcd.endpoint, keepalive_time=KEEPALIVE_TIME,
                        keepalive_timeout=KEEPALIVE_TIMEOUT)
    watch = client.watch(b"/frozen/", b"/frozen0", 0)
    try:
        assert (await anext(watch)).created
        fresh_etcd.pause()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RegistryError, match=r"watch stream from .* broke"):
            async with asyncio.timeout(3 * (KEEPALIVE_TIME + KEEPALIVE_TIMEOUT)):
                await anext(watch)
        print(f"cut {loop.time() - started:.1f}s after the freeze")
    finally:
        fresh_etcd.resume()
        await watch.aclose()
        await client.close()
