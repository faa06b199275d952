"""The engine: on the one fleetd holding the lead, place units on machines.

Leadership is a key on the agent's lease (create-if-absent). While leading,
the engine keeps a view of units/, machines/, schedule/ and refused/ (units
a machine has outside fleet, fleetpy.agent.foreign) from resumable watches
and runs the pure planner (fleetpy.engine.plan) on every change and every
reconcile interval. Its writes compare the leader key, so a
deposed leader's writes are rejected by etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from fleetpy.engine.plan import SpecCache, plan_engine
from fleetpy.model.types import Machine, ScheduledUnit
from fleetpy.registry.base import (
    LeaderToken,
    Lease,
    NotLeaderError,
    Registry,
    RegistryError,
    UnitRecord,
    WatchUpdate,
)
from fleetpy.registry.codec import decode_machine, decode_refusal, decode_scheduled, decode_unit
from fleetpy.registry.view import apply_update

log = logging.getLogger("fleetpy.engine")

COALESCE = 0.005


class Engine:
    def __init__(
        self,
        registry: Registry,
        machine_id: str,
        lease: Callable[[], Lease],
        interval: float = 2.0,
    ) -> None:
        self._registry = registry
        self._machine_id = machine_id
        self._lease = lease
        self._interval = interval
        self._units: dict[str, UnitRecord] = {}
        self._machines: dict[str, Machine] = {}
        self._schedule: dict[tuple[str, str], ScheduledUnit] = {}
        self._refused: dict[tuple[str, str], str] = {}
        self._synced: set[str] = set()
        self._waiting: dict[str, str] = {}
        self._specs: SpecCache = {}
        self._token: LeaderToken | None = None
        self._wake = asyncio.Event()
        self.leading = False
        self.observe_pass: Callable[[float], None] | None = None  # fleetd's metrics
        self._stopping = False

    async def run(self) -> None:
        """Campaign for the lead; lead until deposed; campaign again (until resign)."""
        while not self._stopping:
            token = None
            try:
                token = await self._registry.campaign(self._machine_id, self._lease())
            except RegistryError as exc:
                log.warning("cannot campaign for engine leader: %s", exc)
            if token is None:
                await self._wait_for_vacancy()
                continue
            log.info("became engine leader (machine %s)", self._machine_id[:8])
            self.leading = True
            try:
                await self._lead(token)
            except* NotLeaderError:
                log.warning("lost the engine lead: leader key changed; standing down")
            except* RegistryError as group:
                log.warning("engine stopped leading on a registry error: %s", group.exceptions[0])
                await asyncio.sleep(1.0)
            finally:
                self.leading = False
                self._token = None
                self._synced.clear()

    async def resign(self) -> None:
        """Give the lead away quickly on shutdown (best effort); campaign no more."""
        self._stopping = True
        token, self._token = self._token, None
        if token is not None:
            with contextlib.suppress(RegistryError):
                await self._registry.resign(token)
                log.info("resigned the engine lead")

    async def _wait_for_vacancy(self) -> None:
        """Sleep until the leader key is gone (watched, not polled)."""
        try:
            async for update in self._registry.watch("engine/leader"):
                if update.reset and "engine/leader" not in update.items:
                    return
                if any(e.kind == "delete" for e in update.events):
                    return
        except RegistryError as exc:
            log.warning("leader watch failed: %s", exc)
            await asyncio.sleep(1.0)

    async def _lead(self, token: LeaderToken) -> None:
        self._token = token
        self._waiting = await self._registry.list_waiting()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow("units/", self._apply_units))
            group.create_task(self._follow("machines/", self._apply_machines))
            group.create_task(self._follow("schedule/", self._apply_schedule))
            group.create_task(self._follow("refused/", self._apply_refused))
            group.create_task(self._follow("engine/leader", self._check_leader))
            group.create_task(self._tick())
            await self._reconcile_loop(token)

    async def _follow(self, prefix: str, apply: Callable[[WatchUpdate], None]) -> None:
        async for update in self._registry.watch(prefix):
            apply(update)
            self._synced.add(prefix)
            self._wake.set()

    def _check_leader(self, update: WatchUpdate) -> None:
        if update.reset:
            present = "engine/leader" in update.items
        else:
            present = not any(e.kind == "delete" for e in update.events)
        if not present:
            raise NotLeaderError("leader key deleted")

    def _apply_units(self, update: WatchUpdate) -> None:
        apply_update(self._units, update, _name, decode_unit)

    def _apply_machines(self, update: WatchUpdate) -> None:
        changes = apply_update(
            self._machines, update, _name, lambda key, value, _rev: decode_machine(key, value)
        )
        if update.reset:
            return
        for machine_id, known, machine in changes:
            if machine is None:
                log.info("machine %s left the cluster", machine_id[:8])
            elif known is None:
                log.info("machine %s joined (%s)", machine_id[:8], machine.public_ip)
            elif known.metadata != machine.metadata:
                log.info("machine %s metadata now %s", machine_id[:8], ",".join(
                    f"{k}={v}" for k, v in sorted(machine.metadata.items())) or "-")

    def _apply_schedule(self, update: WatchUpdate) -> None:
        apply_update(
            self._schedule, update, _machine_and_name,
            lambda key, value, _rev: decode_scheduled(key, value),
        )

    def _apply_refused(self, update: WatchUpdate) -> None:
        apply_update(
            self._refused, update, _machine_and_name,
            lambda key, value, _rev: decode_refusal(key, value)[2],
        )

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._wake.set()

    async def _reconcile_loop(self, token: LeaderToken) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(COALESCE)
            self._wake.clear()
            if len(self._synced) < 5:
                continue
            started = time.perf_counter()
            plan = plan_engine(
                list(self._units.values()),
                list(self._machines.values()),
                list(self._schedule.values()),
                waiting=self._waiting,
                specs=self._specs,
                refused=self._refused,
            )
            if self.observe_pass is not None:
                self.observe_pass(time.perf_counter() - started)
            self._specs = plan.specs
            waiting = self._waiting_changes(plan.waiting)
            if not (plan.puts or plan.deletes or waiting):
                continue
            try:
                await self._registry.apply_schedule(token, plan.puts, plan.deletes, waiting)
            except RegistryError as exc:
                if isinstance(exc, NotLeaderError):
                    raise
                log.warning("cannot write the schedule, retrying: %s", exc)
                await asyncio.sleep(0.5)
                self._wake.set()
                continue
            for decision in plan.decisions:
                log.info("%s", decision)
            # Our own writes come back through the watch; keep the view in
            # step now so the next pass does not decide the same thing again.
            for name, reason in waiting.items():
                if reason is None:
                    self._waiting.pop(name, None)
                else:
                    self._waiting[name] = reason
            for unit in plan.puts:
                self._schedule[(unit.machine_id, unit.name)] = unit
            for machine_id, name in plan.deletes:
                self._schedule.pop((machine_id, name), None)

    def _waiting_changes(self, planned: Mapping[str, str | None]) -> dict[str, str | None]:
        """Only what differs from the reasons already written (None clears one)."""
        now = {name: reason for name, reason in planned.items() if reason is not None}
        changes: dict[str, str | None] = {
            name: reason for name, reason in now.items() if self._waiting.get(name) != reason
        }
        changes.update({name: None for name in self._waiting if name not in now})
        return changes


def _name(key: str) -> str:
    """``units/hello.service`` -> ``hello.service`` (likewise machines/<id>)."""
    return key.rsplit("/", 1)[1]


def _machine_and_name(key: str) -> tuple[str, str]:
    """``schedule/<machine id>/<unit>`` -> (machine id, unit)."""
    _, machine_id, name = key.split("/", 2)
    return machine_id, name
