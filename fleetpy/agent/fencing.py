"""StopWhenDisconnected at the edge: the clock reading and the registry read the planner needs.

The decision is the agent planner's (``fleetpy.agent.plan.Fence``); this
module measures. ``Fencing.run()`` reads how long ago this machine's lease
was last renewed (``since_renewal``: the event loop's monotonic clock against
the lease's ``renewed_at``; infinite once the lease is lost) when the cut-off
(``STOP_AT`` of agent_ttl) would be reached, and every ``TICK`` while cut
off, and wakes the agent's reconcile when it crosses the cut-off, either
way. Once the lease is renewed again (or the machine registered again on a
new lease) after a cut-off, fenced units stay down until one read of this
machine's schedule, made after the renewal, confirms they are still
scheduled here: the schedule watch may lag, and the engine may have moved
them meanwhile. A unit that read does not show stays
down until it leaves the watched schedule (it is then unloaded) or a later
read shows it. One log line per change of state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from fleetpy.agent.machine_log import MachineLog
from fleetpy.agent.plan import STOP_AT, DesiredUnit, Fence, cut_off
from fleetpy.model.types import TargetState
from fleetpy.model.xfleet import xfleet_of
from fleetpy.registry.base import Registry, RegistryError

TICK = 0.25  # seconds between clock readings while cut off (ttl/20 for a shorter ttl)
CONFIRM_EVERY = 1.0  # seconds between reads while some fenced unit is unconfirmed


def fenced(name: str, contents: str) -> bool:
    """Whether a scheduled unit asks for StopWhenDisconnected (the engine schedules only
    units whose [X-Fleet] is valid; one that is not is taken as not fenced)."""
    if "StopWhenDisconnected" not in contents:
        return False  # the only spelling of the option: no need to parse the file
    try:
        return xfleet_of(name, contents).stop_when_disconnected
    except ValueError:
        return False


def tick_of(ttl: float) -> float:
    return min(TICK, ttl / 20)


def _names(names: set[str] | frozenset[str]) -> str:
    return ", ".join(sorted(names)) or "none"


class Fencing:
    """The clock side of StopWhenDisconnected for one agent."""

    def __init__(
        self,
        registry: Registry,
        machine_id: str,
        since_renewal: Callable[[], float],
        ttl: float,
        desired: Callable[[], Mapping[str, DesiredUnit]],
        wake: Callable[[], None],
        log: MachineLog,
    ) -> None:
        self._registry = registry
        self._machine_id = machine_id
        self._since = since_renewal
        self.ttl = ttl
        self._desired = desired
        self._wake = wake
        self._log = log
        self.cut = False  # cut off, and not yet confirmed since
        self._unconfirmed: frozenset[str] = frozenset()
        self._said_error = ""

    def _fenced(self) -> frozenset[str]:
        return frozenset(n for n, d in self._desired().items() if d.fenced)

    def fence(self) -> Fence:
        """The planner's input now."""
        since = self._since()
        fenced = self._fenced()
        # cut off: every fenced unit, also after the renewal until the read confirms them
        cut = self.cut or cut_off(since, self.ttl)
        unconfirmed = fenced if cut else self._unconfirmed & fenced
        return Fence(since, self.ttl, unconfirmed)

    async def run(self) -> None:
        """Connected: sleep until the cut-off would come (renewals push it back, so this
        wakes about once per keepalive interval). Cut off or unconfirmed: every tick."""
        tick = tick_of(self.ttl)
        last_read = 0.0
        loop = asyncio.get_running_loop()
        while True:
            since = self._since()
            delay = tick
            if cut_off(since, self.ttl):
                if not self.cut:
                    self._cut_off(since)
            elif self.cut or (self._unconfirmed and loop.time() - last_read >= CONFIRM_EVERY):
                last_read = loop.time()
                await self._confirm(since)
            elif not self._unconfirmed:
                delay = max(0.0, STOP_AT * self.ttl - since)
            await asyncio.sleep(delay)

    def _cut_off(self, since: float) -> None:
        self.cut = True
        self._unconfirmed = frozenset()
        running = {n for n, d in self._desired().items()
                   if d.fenced and d.target == TargetState.LAUNCHED}
        when = "the lease is lost" if since == float("inf") else f"{since:.1f}s"
        self._log.warning(
            "no lease renewal for %s (fenced units stop at %.1fs, 2/3 of agent_ttl %gs): "
            "stopping the units with StopWhenDisconnected until it is renewed: %s",
            when, STOP_AT * self.ttl, self.ttl, _names(running))
        self._wake()

    async def _confirm(self, since: float) -> None:
        """Read this machine's schedule (after the renewal): which fenced units may run."""
        try:  # never past the next cut-off: this loop must be free to see it
            async with asyncio.timeout(max(tick_of(self.ttl), STOP_AT * self.ttl - since)):
                entries = await self._registry.list_schedule(self._machine_id)
        except (RegistryError, TimeoutError) as exc:
            exc = exc if str(exc) else RegistryError("no answer before the next cut-off")
            if str(exc) != self._said_error:
                self._said_error = str(exc)
                self._log.warning("lease renewed, but this machine's schedule cannot be read "
                                  "to confirm the fenced units, retrying: %s", exc)
            return
        self._said_error = ""
        here = {e.name for e in entries}
        fenced = self._fenced()
        before = self._unconfirmed if not self.cut else fenced
        now = frozenset(n for n in before if n in fenced and n not in here)
        if self.cut:
            self._log.info(
                "lease renewed %.1fs ago: units with StopWhenDisconnected may run again: %s; "
                "no longer scheduled here: %s", since, _names(fenced - now), _names(now))
        elif self._unconfirmed & here:
            self._log.info("units with StopWhenDisconnected confirmed as scheduled here: %s",
                           _names(self._unconfirmed & here))
        changed = self.cut or now != self._unconfirmed
        self.cut = False
        self._unconfirmed = now
        if changed:
            self._wake()
