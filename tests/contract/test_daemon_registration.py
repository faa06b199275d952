"""fleetd registration on a real etcd: duplicates refused, restarts adopt.

Uses the daemon's own registration step (the first thing fleetd does) with a
private state dir standing in for /run/fleet.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fleetpy.config import Config
from fleetpy.daemon import Daemon, FatalError
from fleetpy.model.types import Machine
from fleetpy.registry.etcd import EtcdRegistry
from tests.fixtures.etcd import EtcdProcess

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(30)]

MACHINE = Machine(id="4f4a4289" + "0" * 24, public_ip="172.17.8.101")


def daemon(etcd: EtcdProcess, prefix: str, state: Path) -> Daemon:
    config = replace(Config(), etcd_servers=(etcd.endpoint,), etcd_key_prefix=prefix)
    return Daemon(config, state_dir=state)


async def test_second_fleetd_with_the_same_machine_id_is_refused(
    etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    try:
        first = await daemon(etcd_server, etcd_prefix, tmp_path / "a")._register(registry, MACHINE)
        with pytest.raises(FatalError, match=f"machine ID {MACHINE.id} is already registered"):
            await daemon(etcd_server, etcd_prefix, tmp_path / "b")._register(registry, MACHINE)
        # The refused one changed nothing: the first registration still stands.
        assert [m.id for m in await registry.list_machines()] == [MACHINE.id]
        assert first.is_alive()
    finally:
        await registry.close()


async def test_restarted_fleetd_adopts_its_lease(
    etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    try:
        first = await daemon(etcd_server, etcd_prefix, tmp_path)._register(registry, MACHINE)
        again = await daemon(etcd_server, etcd_prefix, tmp_path)._register(registry, MACHINE)
        assert again.id == first.id
        assert [m.id for m in await registry.list_machines()] == [MACHINE.id]
    finally:
        await registry.close()


async def test_a_dead_lease_is_not_adopted(
    etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    try:
        first = await daemon(etcd_server, etcd_prefix, tmp_path)._register(registry, MACHINE)
        await first.revoke()
        assert await registry.list_machines() == []
        again = await daemon(etcd_server, etcd_prefix, tmp_path)._register(registry, MACHINE)
        assert again.id != first.id
        assert [m.id for m in await registry.list_machines()] == [MACHINE.id]
        assert int((tmp_path / "agent.lease").read_text()) == again.id
    finally:
        await registry.close()


def test_second_fleetd_on_the_same_machine_is_refused(tmp_path: Path) -> None:
    from fleetpy.daemon import _lock

    held = _lock(tmp_path / "fleetd.lock")
    try:
        with pytest.raises(FatalError, match=r"another fleetd \(PID \d+\) is already running"):
            _lock(tmp_path / "fleetd.lock")
    finally:
        held.close()
    _lock(tmp_path / "fleetd.lock").close()  # free again once the first one is gone
