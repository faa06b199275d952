"""fleetd registration on a real etcd: duplicates refused, restarts adopt.

Uses the node's registration step (the first thing fleetd does, fleetpy.node)
with a private state dir standing in for /run/fleet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetpy.daemon import FatalError
from fleetpy.model.types import Machine
from fleetpy.node import DuplicateMachineError, Node
from fleetpy.registry.base import Lease, RegistryError
from fleetpy.registry.etcd import EtcdRegistry
from fleetpy.systemd.fake import FakeUnitManager
from tests.fixtures.etcd import EtcdProcess

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(30)]

MACHINE = Machine(id="4f4a4289" + "0" * 24, public_ip="172.17.8.101")


async def register(registry: EtcdRegistry, state: Path) -> Lease:
    node = Node(registry, FakeUnitManager(), MACHINE, state_dir=state)
    await node.start()
    return node.lease()


async def test_second_fleetd_with_the_same_machine_id_is_refused(
    etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    try:
        first = await register(registry, tmp_path / "a")
        refused = f"machine ID {MACHINE.id} is already registered"
        with pytest.raises(DuplicateMachineError, match=refused):
            await register(registry, tmp_path / "b")
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
        first = await register(registry, tmp_path)
        again = await register(registry, tmp_path)
        assert again.id == first.id
        assert [m.id for m in await registry.list_machines()] == [MACHINE.id]
    finally:
        await registry.close()


async def test_a_dead_lease_is_not_adopted(
    etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    registry = EtcdRegistry(etcd_server.endpoint, etcd_prefix)
    try:
        first = await register(registry, tmp_path)
        await first.revoke()
        assert await registry.list_machines() == []
        again = await register(registry, tmp_path)
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


class AnswerLost(EtcdRegistry):
    """etcd applies the first registration but its answer never comes (a timeout)."""

    lost = 0

    async def register_machine(self, machine: Machine, lease: Lease) -> bool:
        done = await super().register_machine(machine, lease)
        if not self.lost:
            self.lost += 1
            raise RegistryError("etcd txn timed out after 1s; the write may or may not "
                                "have been applied")
        return done


class NeverLanded(EtcdRegistry):
    """The first registration times out before etcd applied it."""

    lost = 0

    async def register_machine(self, machine: Machine, lease: Lease) -> bool:
        if not self.lost:
            self.lost += 1
            raise RegistryError("etcd txn timed out after 1s")
        return await super().register_machine(machine, lease)


@pytest.mark.parametrize("kind", [AnswerLost, NeverLanded])
async def test_a_registration_whose_answer_was_lost_is_not_refused_as_a_duplicate(
    etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path, kind: type[EtcdRegistry]
) -> None:
    """fleetd retries a registration etcd did not answer (fleetpy.daemon waits for etcd):
    the retry, and a fleetd started again, go on with the same lease, whether etcd applied
    the first attempt or not (before: the applied one held the machine on a lease nobody
    knew, and every attempt was refused as a duplicate machine until it expired)."""
    registry = kind(etcd_server.endpoint, etcd_prefix)
    try:
        node = Node(registry, FakeUnitManager(), MACHINE, state_dir=tmp_path)
        with pytest.raises(RegistryError, match="timed out"):
            await node.start()
        await node.start()  # the daemon's retry
        first = node.lease()
        assert [m.id for m in await registry.list_machines()] == [MACHINE.id]
        again = await register(registry, tmp_path)  # a fleetd started again
        assert again.id == first.id
    finally:
        await registry.close()
