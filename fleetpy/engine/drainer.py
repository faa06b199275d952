"""The engine's part of a drain: carry each draining machine's drain on (the adapter).

A drain's pace lives in the machine's durable cordon record (fleetpy.model.cordon:
``max_parallel``, ``deadline``), so the leader fleetd carries it on whether or not
a ``fleetctl drain`` waits, and a new leader picks it up where the record says
it was. While leading and while some machine is draining, every ``POLL`` seconds
the drainer takes the engine's view (cordons, schedule, waiting reasons: watched
already), reads the few reported states a drain needs, by key
(fleetpy.engine.drain.states_needed: the units in flight, never all of states/),
runs the pure ``drain_step`` and writes the cordon's next ``move``/``stop``
requests (a compare-and-swap on the record and the leader key: a deposed leader,
a user's uncordon or a fleetctl changing the drain's parameters meanwhile make it
decide again). The engine's planner (fleetpy.engine.plan) honours those requests.

A drain with nothing left to decide (finished: all moved, or only units that
cannot move) costs no reads until its inputs change (the cordon, the units on
the machine or their waiting reasons, its deadline passing). Each decision is
logged once: groups asked to move, units asked to stop, units that cannot move,
a drain that finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetpy.engine.drain import (
    deadline_passed,
    decisions,
    plan_drain,
    reports,
    states_needed,
)
from fleetpy.model.cordon import Cordon, MachineState
from fleetpy.model.types import ScheduledUnit
from fleetpy.registry.base import LeaderToken, Registry, RegistryError

log = logging.getLogger("fleetpy.engine")

POLL = 0.5  # seconds between steps while a drain is in progress


@dataclass(frozen=True, slots=True)
class DrainView:
    """The engine's watched view (read, never changed, by the drainer)."""

    cordons: Mapping[str, Cordon]
    schedule: Mapping[tuple[str, str], ScheduledUnit]
    waiting: Mapping[str, str]


class Drainer:
    def __init__(
        self,
        registry: Registry,
        view: Callable[[], DrainView | None],
        clock: Callable[[], float] = time.time,
        poll: float = POLL,
    ) -> None:
        self._registry = registry
        self._view = view  # None until the engine's view is complete
        self._clock = clock  # wall clock: deadlines are Unix times, set by fleetctl
        self._poll = poll
        self._idle: dict[str, Any] = {}  # machine -> inputs of its finished step
        self._said: dict[str, set[str]] = {}  # machine -> what was logged for it
        self._failing = False

    async def run(self, token: LeaderToken) -> None:
        """Step every draining machine's drain every ``poll`` seconds (while leading)."""
        while True:
            try:
                await self.step(token)
                if self._failing:
                    log.info("drains: registry answers again")
                self._failing = False
            except RegistryError as exc:
                if not self._failing:
                    log.warning("drains: cannot read or write the registry, retrying: %s", exc)
                self._failing = True
            await asyncio.sleep(self._poll)

    async def step(self, token: LeaderToken) -> None:
        """One step of every drain in progress."""
        view = self._view()
        if view is None:
            return
        draining = {m: c for m, c in view.cordons.items() if c.state == MachineState.DRAINING}
        for machine_id in set(self._said) - set(draining):
            self._said.pop(machine_id, None)
            self._idle.pop(machine_id, None)
        if not draining:
            return
        schedule = list(view.schedule.values())
        now = self._clock()
        for _, cordon in sorted(draining.items()):
            await self._advance(token, cordon, schedule, dict(view.waiting), now)

    async def _advance(
        self, token: LeaderToken, cordon: Cordon, schedule: list[ScheduledUnit],
        waiting: dict[str, str], now: float,
    ) -> None:
        machine_id = cordon.machine_id
        passed = deadline_passed(cordon, now)
        here = sorted((e.name, e.hash, e.target) for e in schedule if e.machine_id == machine_id)
        inputs = (cordon, passed, here, [waiting.get(name) for name, _, _ in here])
        if self._idle.get(machine_id) == inputs:
            return
        states = await self._registry.get_unit_states(states_needed(cordon, schedule))
        step = plan_drain(cordon, schedule, states, waiting, cordon.max_parallel, passed)
        said = self._said.setdefault(machine_id, set())
        if step.cordon != cordon:
            if not await self._registry.update_cordon(step.cordon, cordon, token):
                # the record changed meanwhile (fleetctl, uncordon, a write of ours
                # not yet seen) or the lead is gone: decide again on the next view
                return
            for line in decisions(cordon, step, passed):
                log.info("%s", line)
        current = set(reports(step))
        for line in sorted(current - said):
            log.info("drain of machine %s: %s", machine_id[:8], line)
        said &= current | {"finished"}  # a unit stuck again later is said again
        said |= current
        if not step.finished:
            self._idle.pop(machine_id, None)
            said.discard("finished")
            return
        self._idle[machine_id] = (step.cordon, *inputs[1:])
        if "finished" not in said:
            said.add("finished")
            left = step.left
            log.info("drain of machine %s: %s (%d moved%s)", machine_id[:8],
                     f"{len(left)} unit(s) cannot leave" if left else "nothing left to move",
                     len(step.moved), f", global units stay: {', '.join(step.staying)}"
                     if step.staying else "")
