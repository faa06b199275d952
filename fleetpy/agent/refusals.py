"""The agent's refusals at the edge: read back, checked on this machine, published.

fleetpy.agent.foreign decides (pure); this asks systemd (``outside_fleet``)
and etcd (``refused/<machine>/``), and logs each change once. A restarted
fleetd reads its refusals back from its lease first; while it refuses units
it checks again every REFUSAL_RECHECK seconds whether the host's unit is
still there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fleetpy.agent import foreign
from fleetpy.agent.machine_log import MachineLog
from fleetpy.agent.plan import CurrentUnit, DesiredUnit
from fleetpy.model.types import TargetState
from fleetpy.registry.base import Lease, Registry
from fleetpy.systemd.base import UnitManager

REFUSAL_RECHECK = 30.0  # while refusing units: is the host's unit still there?


class Refusals:
    """The units this machine refuses (name -> reason), as published."""

    def __init__(self, registry: Registry, manager: UnitManager, machine_id: str,
                 lease: Callable[[], Lease], log: MachineLog) -> None:
        self._registry = registry
        self._manager = manager
        self._machine_id = machine_id
        self._lease = lease
        self._log = log
        self.now: dict[str, str] | None = None  # None: not read back yet

    async def without_foreign(
        self, desired: dict[str, DesiredUnit], current: dict[str, CurrentUnit]
    ) -> dict[str, DesiredUnit]:
        """``desired`` less the units this machine has outside fleet (published as refused)."""
        if self.now is None:  # a restarted fleetd: its refusals are still on the lease
            found = await self._registry.list_refusals(self._machine_id)
            self.now = {name: reason for (_, name), reason in found.items()}
        unloaded = [
            n for n, u in desired.items() if u.target != TargetState.INACTIVE and n not in current
        ]
        checked = foreign.to_check(unloaded, self.now)
        found_here = await self._manager.outside_fleet(checked) if checked else {}
        result = foreign.decide_refusals(self._machine_id, checked, found_here, self.now)
        if result.changes:
            await self._registry.put_refusals(self._machine_id, result.changes, self._lease())
            for name, reason in result.changes.items():
                if reason is None:
                    self._log.info("unit %s: no longer exists here outside fleet, not refused",
                                   name)
                else:
                    self._log.warning("not loading %s: %s", name, reason)
        self.now = result.now
        return {n: u for n, u in desired.items() if n not in result.now or n in current}

    async def recheck(self, wake: Callable[[], None]) -> None:
        """Wake the reconcile now and then while units are refused."""
        while True:
            await asyncio.sleep(REFUSAL_RECHECK)
            if self.now:
                wake()

    async def publish_again(self) -> None:
        """Write every refusal again (on a new lease)."""
        if self.now:
            await self._registry.put_refusals(self._machine_id, dict(self.now), self._lease())
