"""The engine: on the one fleetd holding the lead, place units on machines.

Leadership is a key on the agent's lease (create-if-absent). While leading,
the engine keeps a view of units/, machines/, schedule/, refused/ (units
a machine has outside fleet, fleetpy.agent.foreign) and cordoned/ (machines
taken out of placement, fleetpy.model.cordon) from resumable watches
and runs the pure planner (fleetpy.engine.plan) when one of them changed the
view: the plan is pure, so an idle cluster costs no passes (the echo of the
engine's own writes is no change either); one pass follows each write, and a
full pass runs every FULL_PASS_EVERY reconcile intervals as a safety net. Its
writes compare the leader key, so a deposed leader's writes are rejected by
etcd.

StopWhenDisconnected: the engine notes when (its monotonic clock) it saw each
machine leave; a machine it never saw leave counts from when this term's view
of machines/ was first read. The planner keeps such a machine's fenced units
there until ``FENCE_MARGIN`` of agent_ttl has passed since (a timer wakes the
engine then).

Drains: while leading, a Drainer (fleetpy.engine.drainer) carries on every
draining machine's drain from the cordon record, on this view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from fleetpy.engine.drainer import Drainer, DrainView
from fleetpy.engine.plan import FENCE_MARGIN, SpecCache, plan_engine
from fleetpy.model.cordon import Cordon
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
from fleetpy.registry.codec import (
    CORDONED,
    LEADER,
    UNITS,
    CodecError,
    decode_cordon,
    decode_leader,
    decode_machine,
    decode_refusal,
    decode_scheduled,
    decode_unit,
)
from fleetpy.registry.unreadable import REPORTS, Unreadable
from fleetpy.registry.view import apply_update

log = logging.getLogger("fleetpy.engine")

COALESCE = 0.005
MAX_COALESCE = 1.0  # seconds: the longest a change waits for a busy engine's next pass
FULL_PASS_EVERY = 30  # engine intervals between passes that nothing asked for


class Engine:
    def __init__(
        self,
        registry: Registry,
        machine_id: str,
        lease: Callable[[], Lease],
        interval: float = 2.0,
        agent_ttl: float = 30.0,
    ) -> None:
        self._registry = registry
        self._machine_id = machine_id
        self._lease = lease
        self._interval = interval
        self._units: dict[str, UnitRecord] = {}
        self._machines: dict[str, Machine] = {}
        self._schedule: dict[tuple[str, str], ScheduledUnit] = {}
        self._skipped: dict[str, dict[str, Unreadable]] = {}  # watched prefix -> entries
        self._refused: dict[tuple[str, str], str] = {}
        self._cordons: dict[str, Cordon] = {}
        self._synced: set[str] = set()
        self._waiting: dict[str, str] = {}
        self._specs: SpecCache = {}
        self._token: LeaderToken | None = None
        self._wake = asyncio.Event()
        self._dirty = True  # something changed since the last pass
        self.fence_wait = FENCE_MARGIN * agent_ttl
        self._gone_at: dict[str, float] = {}  # machine -> when this engine saw it leave
        self._machines_read_at: float | None = None  # this term's first view of machines/
        self._recheck: asyncio.TimerHandle | None = None
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
            except* Exception as group:
                # A bug, or input nobody foresaw: never the end of fleetd. Stand
                # down (the lease keeps the key: we campaign again at once).
                log.error("engine stopped leading on an unexpected error, leading again in "
                          "1s", exc_info=group.exceptions[0])
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
        """Sleep until the leader key is gone or unusable (watched, not polled)."""
        try:
            async for update in self._registry.watch(LEADER):
                if update.reset:
                    if LEADER not in update.items:
                        return
                    if not _readable(update.items[LEADER]):
                        await asyncio.sleep(0.5)  # campaign clears it; never a busy loop
                        return
                for e in update.events:
                    if e.key == LEADER and (e.kind == "delete" or not _readable(e.value)):
                        return
        except RegistryError as exc:
            log.warning("leader watch failed: %s", exc)
            await asyncio.sleep(1.0)

    async def _lead(self, token: LeaderToken) -> None:
        self._token = token
        self._dirty = True
        self._gone_at.clear()  # what it saw in an earlier term tells nothing now
        self._machines_read_at = None
        self._waiting = await self._registry.list_waiting()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow("units/", self._apply_units))
            group.create_task(self._follow("machines/", self._apply_machines))
            group.create_task(self._follow("schedule/", self._apply_schedule))
            group.create_task(self._follow("refused/", self._apply_refused))
            group.create_task(self._follow(CORDONED, self._apply_cordons))
            group.create_task(self._follow(LEADER, self._check_leader))
            group.create_task(self._tick())
            group.create_task(Drainer(self._registry, self._drain_view).run(token))
            await self._reconcile_loop(token)

    def _drain_view(self) -> DrainView | None:
        """What the drainer decides on, once every watched prefix was read."""
        if len(self._synced) < 6:
            return None
        return DrainView(self._cordons, self._schedule, self._waiting)

    async def _follow(self, prefix: str, apply: Callable[[WatchUpdate], bool]) -> None:
        async for update in self._registry.watch(prefix):
            if apply(update) or prefix not in self._synced:
                self._dirty = True
                self._synced.add(prefix)
                self._wake.set()

    def _check_leader(self, update: WatchUpdate) -> bool:
        """Stand down when the leader key is deleted or no longer names this machine."""
        if update.reset:
            values = [update.items.get(LEADER)]
        else:
            values = [e.value if e.kind == "put" else None
                      for e in update.events if e.key == LEADER]
        for value in values:
            if value is None:
                raise NotLeaderError("leader key deleted")
            if not _readable(value, self._machine_id):
                raise NotLeaderError("leader key rewritten: it no longer names this machine")
        return False

    def _fold(
        self, prefix: str, view: dict[Any, Any], update: WatchUpdate,
        key_of: Callable[[str], Any], decode: Callable[[str, bytes, int], Any],
    ) -> tuple[list[tuple[Any, Any, Any]], bool]:
        """apply_update, with entries that do not decode skipped and said once.

        -> (changes, whether the view or the set of skipped entries changed).
        """
        skipped = self._skipped.setdefault(prefix, {})
        before = dict(skipped)
        changes = apply_update(view, update, key_of, decode, skipped, self._registry.prefix)
        REPORTS.sync(before, skipped)
        return changes, _changed(changes) or before.keys() != skipped.keys()

    def _apply_units(self, update: WatchUpdate) -> bool:
        return self._fold(UNITS, self._units, update, _name, decode_unit)[1]

    def _apply_machines(self, update: WatchUpdate) -> bool:
        changes, changed = self._fold(
            "machines/", self._machines, update, _name,
            lambda key, value, _rev: decode_machine(key, value),
        )
        now = asyncio.get_running_loop().time()
        if self._machines_read_at is None:
            self._machines_read_at = now
        for machine_id, _, machine in changes:
            if machine is None:
                self._gone_at[machine_id] = now
            else:
                self._gone_at.pop(machine_id, None)
        if update.reset:
            return changed
        for machine_id, known, machine in changes:
            if machine is None:
                log.info("machine %s left the cluster", machine_id[:8])
            elif known is None:
                log.info("machine %s joined (%s)", machine_id[:8], machine.public_ip)
            elif known.metadata != machine.metadata:
                log.info("machine %s metadata now %s", machine_id[:8], ",".join(
                    f"{k}={v}" for k, v in sorted(machine.metadata.items())) or "-")
        return changed

    def _apply_schedule(self, update: WatchUpdate) -> bool:
        # Our own writes come back here already applied (see _reconcile_loop): no change.
        return self._fold(
            "schedule/", self._schedule, update, _machine_and_name,
            lambda key, value, _rev: decode_scheduled(key, value),
        )[1]

    def _apply_refused(self, update: WatchUpdate) -> bool:
        return self._fold(
            "refused/", self._refused, update, _machine_and_name,
            lambda key, value, _rev: decode_refusal(key, value)[2],
        )[1]

    def _apply_cordons(self, update: WatchUpdate) -> bool:
        changes, changed = self._fold(
            CORDONED, self._cordons, update, _name,
            lambda key, value, _rev: decode_cordon(key, value),
        )
        for machine_id, known, cordon in changes:
            if cordon is None:
                log.info("machine %s uncordoned: units may be placed there again",
                         machine_id[:8])
            elif known is None or known.state != cordon.state:
                log.info("machine %s %s by %s (%s): no new units placed there", machine_id[:8],
                         cordon.state, cordon.by or "?", cordon.reason or "no reason given")
        return changed

    async def _tick(self) -> None:
        """A full pass now and then, whatever the watches said (a safety net)."""
        while True:
            await asyncio.sleep(self._interval * FULL_PASS_EVERY)
            self._dirty = True
            self._wake.set()

    async def _reconcile_loop(self, token: LeaderToken) -> None:
        """Plan when something changed: the plan is pure, so unchanged inputs (the
        idle tick) would give the same empty plan; a failed write plans again."""
        loop = asyncio.get_running_loop()
        last, ended = 0.0, loop.time()
        while True:
            await self._wake.wait()
            # Gather what else changes meanwhile; a costly pass waits as long as it
            # took, so that planning never takes more than half of fleetd's time.
            await asyncio.sleep(coalesce_wait(last, loop.time() - ended))
            self._wake.clear()
            if len(self._synced) < 6 or not self._dirty:
                continue
            self._dirty = False
            started = time.perf_counter()
            now = asyncio.get_running_loop().time()
            since_read = now if self._machines_read_at is None else self._machines_read_at
            gone = {machine_id: now - self._gone_at.get(machine_id, since_read)
                    for machine_id, _ in self._schedule if machine_id not in self._machines}
            # The planner is pure and gets copies: it runs in a thread, so the
            # event loop (API, keepalives, watches) keeps answering meanwhile.
            plan = await asyncio.to_thread(
                plan_engine,
                list(self._units.values()),
                list(self._machines.values()),
                list(self._schedule.values()),
                waiting=dict(self._waiting),
                specs=self._specs,
                unreadable=frozenset(
                    rel[len(UNITS):] for rel in self._skipped.get(UNITS, {})),
                refused=dict(self._refused),
                gone=gone,
                fence_wait=self.fence_wait,
                cordons=dict(self._cordons),
            )
            last = time.perf_counter() - started
            ended = loop.time()
            if self.observe_pass is not None:
                self.observe_pass(last)
            self._specs = plan.specs
            self._recheck_in(plan.recheck_in)
            waiting = self._waiting_changes(plan.waiting)
            if not (plan.puts or plan.deletes or waiting):
                continue
            try:
                # by machine: an agent gets its units of a pass in one transaction, so
                # one watch event and one reconcile (10,000 units in transactions of 128
                # in name order reached each of 1,000 agents one unit at a time)
                puts = sorted(plan.puts, key=lambda u: (u.machine_id, u.name))
                await self._registry.apply_schedule(token, puts, plan.deletes, waiting,
                                                    absent=plan.absent)
            except RegistryError as exc:
                if isinstance(exc, NotLeaderError):
                    raise
                log.warning("cannot write the schedule, retrying: %s", exc)
                await asyncio.sleep(0.5)
                self._dirty = True
                self._wake.set()
                continue
            ended = loop.time()  # idle from when the write is done
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
            # One more pass on the view with these writes in it; it is empty
            # unless a decision of this pass enables another.
            self._dirty = True
            self._wake.set()

    def _recheck_in(self, delay: float | None) -> None:
        """Plan again once a gone machine's fenced units may be placed elsewhere."""
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        if delay is not None:
            self._recheck = asyncio.get_running_loop().call_later(delay + 0.01, self._replan)

    def _replan(self) -> None:
        self._recheck = None
        self._dirty = True
        self._wake.set()

    def _waiting_changes(self, planned: Mapping[str, str | None]) -> dict[str, str | None]:
        """Only what differs from the reasons already written (None clears one)."""
        now = {name: reason for name, reason in planned.items() if reason is not None}
        changes: dict[str, str | None] = {
            name: reason for name, reason in now.items() if self._waiting.get(name) != reason
        }
        changes.update({name: None for name in self._waiting if name not in now})
        return changes


def coalesce_wait(last: float, idle: float) -> float:
    """How long a pass waits for more changes: as long as the last pass took (at most
    MAX_COALESCE), less the time the engine has been idle since it (and its write)
    ended. The first change after a quiet spell (a machine gone) is planned at once;
    passes in a row still leave fleetd half of its time."""
    return max(COALESCE, min(last, MAX_COALESCE) - idle)


def _readable(value: bytes, machine_id: str | None = None) -> bool:
    """Whether a leader key's value decodes (and names ``machine_id``, when given)."""
    try:
        leader = decode_leader(value)
    except CodecError:
        return False
    return machine_id is None or leader == machine_id


def _changed(changes: list[tuple[Any, Any, Any]]) -> bool:
    """Whether a watch update changed the view (an echo of our own write does not)."""
    return any(old != new for _, old, new in changes)


def _name(key: str) -> str:
    """``units/hello.service`` -> ``hello.service`` (likewise machines/<id>)."""
    parts = key.split("/")
    if len(parts) != 2:
        raise CodecError(f"key {key!r}: expected {parts[0]}/<name>")
    return parts[1]


def _machine_and_name(key: str) -> tuple[str, str]:
    """``schedule/<machine id>/<unit>`` -> (machine id, unit)."""
    parts = key.split("/")
    if len(parts) != 3:
        raise CodecError(f"key {key!r}: expected schedule/<machine_id>/<name>")
    return parts[1], parts[2]
