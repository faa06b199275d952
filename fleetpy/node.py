"""One machine's fleetd, assembled once: registration, lease, presence, agent, engine.

``Node`` is what fleetd runs (fleetpy.daemon adds the process around it: lock,
config, API, metrics, signals), what the loop tests run on the in-memory
registry and fake systemd, and what hollow machines run on a shared etcd
connection. All three run this code.

- ``start()`` registers the machine: it adopts the lease a previous fleetd on
  this machine left alive (the lease id is kept in ``state_dir/agent.lease``),
  so a restart changes nothing in the cluster; otherwise it grants a lease and
  creates ``machines/<id>`` on it, refusing a second live fleetd with the
  same machine id.
- ``run()`` runs the agent, the engine (campaigning for the lead), presence
  (runtime metadata) and re-registration after a lost lease, until one of
  them fails or ``stop()`` is called. It raises the first failure.
- ``stop()`` resigns the engine lead and stops the loops. It never touches a
  unit, and leaves the lease to expire or to be adopted (``leave()`` revokes it,
  for a machine shutting down).

A node does not own its registry or its unit manager: several nodes can share
one registry (one etcd connection), each with its own lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from pathlib import Path

from fleetpy.agent.agent import Agent
from fleetpy.agent.hold import hold_window
from fleetpy.agent.presence import Presence
from fleetpy.engine.engine import Engine
from fleetpy.model.types import Machine
from fleetpy.registry.base import Lease, Registry, RegistryError
from fleetpy.systemd.base import UnitManager

log = logging.getLogger("fleetpy.node")

LEASE_FILE = "agent.lease"
REGISTER_RETRY = 1.0
STOP_GRACE = 3.0


class DuplicateMachineError(Exception):
    """Another live fleetd already registered this machine id."""


class Node:
    """One machine of the cluster: construct, ``await start()``, ``await run()``."""

    def __init__(
        self,
        registry: Registry,
        manager: UnitManager,
        machine: Machine,
        *,
        state_dir: Path,
        agent_ttl: int = 30,
        engine_interval: float = 2.0,
        engine: bool = True,
    ) -> None:
        self.registry = registry
        self.manager = manager
        self.state_dir = state_dir
        self.agent_ttl = agent_ttl
        self.presence = Presence(registry, machine, state_dir)  # + metadata set at runtime
        self._lease: Lease | None = None
        self.past_keepalive_failures = 0  # of leases lost before the current one
        self.agent = Agent(registry, manager, machine.id, self.lease, state_dir,
                           since_renewal=self.since_renewal, ttl=agent_ttl)
        self.engine = Engine(registry, machine.id, self.lease, engine_interval,
                             agent_ttl=agent_ttl)
        self._run_engine = engine
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def machine(self) -> Machine:
        return self.presence.machine

    @property
    def id(self) -> str:
        return self.presence.machine.id

    def lease(self) -> Lease:
        if self._lease is None:
            raise RuntimeError("node not started: no lease yet")
        return self._lease

    def since_renewal(self) -> float:
        """Seconds since the lease was last renewed (monotonic); infinite once it is lost."""
        lease = self._lease
        if lease is None or not lease.is_alive():
            return math.inf
        return asyncio.get_running_loop().time() - lease.renewed_at

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The loops ``run()`` started (agent, lease, presence, engine)."""
        return list(self._tasks)

    @property
    def registered(self) -> bool:
        return self._lease is not None and self._lease.is_alive()

    @property
    def keepalive_failures(self) -> int:
        now = self._lease.keepalive_failures if self._lease is not None else 0
        return self.past_keepalive_failures + now

    # registration --------------------------------------------------------------
    async def start(self) -> None:
        """Register (adopting a live lease left by the previous fleetd here)."""
        self._lease = await self._register()

    async def _register(self) -> Lease:
        machine = self.presence.machine
        lease_file = self.state_dir / LEASE_FILE
        adopted = None
        with contextlib.suppress(OSError, ValueError):
            adopted = await self.registry.adopt_lease(int(lease_file.read_text()),
                                                      self.agent_ttl)
        if adopted is not None:
            try:
                await self.registry.update_machine(machine, adopted)
            except RegistryError as exc:
                # The lease lives but the record is not on it: a registration on it that
                # never landed (etcd did not answer): register on it now.
                log.info("lease %x of this machine lives, its record not (%s): "
                         "registering on it", adopted.id, exc)
            else:
                log.info("adopted lease %x of the previous fleetd on this machine "
                         "(machine %s)", adopted.id, machine.id[:8])
                return adopted
        lease = adopted or await self.registry.grant_lease(self.agent_ttl)
        # Kept before registering: when etcd applies the registration but its answer is
        # lost (a timeout), the next attempt (or the next fleetd) adopts this lease instead
        # of finding the machine taken by it and refusing itself as a duplicate.
        with contextlib.suppress(OSError):
            lease_file.parent.mkdir(parents=True, exist_ok=True)
            lease_file.write_text(f"{lease.id}\n")
        if not await self.registry.register_machine(machine, lease):
            await lease.revoke()
            raise DuplicateMachineError(
                f"machine ID {machine.id} is already registered by another live fleetd: "
                "refusing to start a second fleetd with the same machine-id "
                "(give each machine its own /etc/machine-id)"
            )
        log.info("registered machine %s (%s) on lease %x", machine.id[:8], machine.public_ip,
                 lease.id)
        # a new lease: while the old one was gone, the engine may have unscheduled units
        # that still run here and will be placed here again (pinned, Global, no room)
        self.agent.registered_again(hold_window(self.agent_ttl))
        return lease

    async def _keep_registered(self) -> None:
        """When the lease is lost (etcd unreachable past the TTL), register again."""
        while True:
            await self.lease().wait_lost()
            self.past_keepalive_failures += self.lease().keepalive_failures
            log.warning("agent lease lost: registering machine %s again", self.id[:8])
            while True:
                try:
                    self._lease = await self._register()
                    break
                except (RegistryError, DuplicateMachineError) as exc:
                    log.warning("machine %s: cannot register yet: %s", self.id[:8], exc)
                    await asyncio.sleep(REGISTER_RETRY)
            await self.agent.report_all()

    # running -------------------------------------------------------------------
    async def run(self) -> None:
        """Run every loop until one fails (raised) or ``stop()`` (returns)."""
        if self._lease is None:
            await self.start()
        self._tasks = [
            asyncio.create_task(self.agent.run(), name=f"agent-{self.id[:8]}"),
            asyncio.create_task(self._keep_registered(), name=f"lease-{self.id[:8]}"),
            asyncio.create_task(self.presence.follow(self.lease),
                                name=f"presence-{self.id[:8]}"),
        ]
        if self._run_engine:
            self._tasks.append(
                asyncio.create_task(self.engine.run(), name=f"engine-{self.id[:8]}"))
        try:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self.stop()
            raise
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                await self.stop()
                error = task.exception()
                assert error is not None
                raise error
        await self.stop()

    async def stop(self) -> None:
        """Resign the lead and stop the loops; units and the lease are left as they are."""
        await self.engine.resign()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, stuck = await asyncio.wait(tasks, timeout=STOP_GRACE)
        for task in stuck:
            log.warning("machine %s: %s did not stop within %gs", self.id[:8],
                        task.get_name(), STOP_GRACE)

    async def leave(self) -> None:
        """Leave the cluster now (revoke the lease): its units are placed elsewhere at once."""
        if self._lease is not None:
            with contextlib.suppress(RegistryError):
                await self._lease.revoke()
