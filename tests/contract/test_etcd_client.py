"""etcd only: endpoints, failover, timeouts, and what etcd unreachable looks like."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from fleetpy.model.types import TargetState
from fleetpy.registry.base import RegistryError
from fleetpy.registry.etcd import EtcdRegistry
from tests.contract.helpers import next_update, unit
from tests.fixtures.etcd import EtcdProcess, free_port

pytestmark = pytest.mark.etcd


async def test_unreachable_etcd_names_the_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    registry = EtcdRegistry(endpoint)
    try:
        with pytest.raises(RegistryError) as raised:
            await registry.list_units()
        assert str(raised.value) == f"cannot reach etcd (tried {endpoint}): connection refused"
        with pytest.raises(RegistryError, match=r"^cannot reach etcd \(tried "):
            await registry.create_unit(unit("a.service"), TargetState.LAUNCHED)
    finally:
        await registry.close()


async def test_unreachable_etcd_names_every_endpoint() -> None:
    one, two = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError) as raised:
        await EtcdRegistry.connect(f"{one},{two}", "/x/")
    assert str(raised.value) == f"cannot reach etcd (tried {one}, {two}): connection refused"


async def test_fails_over_to_a_live_endpoint(etcd_server: EtcdProcess, etcd_prefix: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    registry = EtcdRegistry(f"{dead},{etcd_server.endpoint}", etcd_prefix)
    try:
        assert await registry.create_unit(unit("a.service"), TargetState.LAUNCHED)
        assert registry.client.current_endpoint == etcd_server.endpoint
        assert registry.client.requests["txn"] == 2  # the dead endpoint, then the live one
        assert [r.unit.name for r in await registry.list_units()] == ["a.service"]
        assert registry.client.requests["range"] == 1  # straight to the live one now
        async with aclosing(registry.watch("units/")) as watch:
            assert list((await next_update(watch)).items) == ["units/a.service"]
    finally:
        await registry.close()


async def test_fails_over_when_the_current_endpoint_dies(
    fresh_etcd: EtcdProcess, etcd_server: EtcdProcess, etcd_prefix: str
) -> None:
    # Two single-member etcds are not one cluster: the data differs, but the
    # client must move to whichever endpoint answers.
    registry = EtcdRegistry(f"{fresh_etcd.endpoint},{etcd_server.endpoint}", etcd_prefix)
    try:
        await registry.put_unit(unit("on-first.service"), TargetState.LAUNCHED)
        assert registry.client.current_endpoint == fresh_etcd.endpoint
        await asyncio.to_thread(fresh_etcd.stop)
        assert await registry.list_units() == []  # answered by the second etcd
        assert registry.client.current_endpoint == etcd_server.endpoint
    finally:
        await registry.close()


async def test_request_timeout_applies_to_a_hung_etcd(fresh_etcd: EtcdProcess) -> None:
    registry = EtcdRegistry(fresh_etcd.endpoint, request_timeout=0.3)
    try:
        await registry.list_units()  # connected
        fresh_etcd.pause()  # accepts nothing, answers nothing
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RegistryError) as raised:
            await registry.list_units()
        assert loop.time() - started < 1.0
        assert str(raised.value) == (
            f"cannot reach etcd (tried {fresh_etcd.endpoint}): timed out after 0.3s"
        )
        with pytest.raises(RegistryError, match="may or may not have been applied"):
            await registry.create_unit(unit("a.service"), TargetState.LAUNCHED)
        fresh_etcd.resume()
        await registry.put_unit(unit("b.service"), TargetState.LAUNCHED)
        names = [r.unit.name for r in await registry.list_units()]
        # a.service was sent before the timeout: etcd may apply it once resumed.
        assert names in (["b.service"], ["a.service", "b.service"])
    finally:
        fresh_etcd.resume()
        await registry.close()


async def test_connect_checks_etcd_answers(etcd_server: EtcdProcess, etcd_prefix: str) -> None:
    registry = await EtcdRegistry.connect(etcd_server.endpoint, etcd_prefix, request_timeout=2.0)
    try:
        assert registry.client.request_timeout == 2.0
        assert await registry.ping() >= 1
    finally:
        await registry.close()


async def test_calls_after_close_raise_registry_error(
    etcd_server: EtcdProcess, etcd_prefix: str
) -> None:
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    await registry.close()
    with pytest.raises(RegistryError, match="closed"):
        await registry.list_units()
