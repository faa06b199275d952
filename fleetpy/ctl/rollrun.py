"""fleetctl rolling-update: drives the registry through the client (either driver).

The decisions are fleetpy.ctl.rolling's; this module writes units (put_unit:
new contents, same desired state; the engine updates the schedule entry in
place, so an instance keeps its machine, and that machine's agent stops the
old version, writes the new file, reloads systemd and starts it), follows the
cluster through ``client.watch_units`` and prints one line per step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from fleetpy.api.snapshot import Snapshot
from fleetpy.ctl import files
from fleetpy.ctl.client import FleetClient
from fleetpy.ctl.common import err, out
from fleetpy.ctl.rolling import (
    Health,
    Watch,
    describe,
    health,
    next_batch,
    observe,
    pick_state,
    plan_rollout,
    revert_order,
)
from fleetpy.model import names
from fleetpy.model.types import TargetState, UnitFile
from fleetpy.model.unitfile import short_hash
from fleetpy.registry.base import UnitRecord

TICK = 0.2  # s: how often time alone (min-healthy-time, the deadline) is looked at again


@dataclass(frozen=True, slots=True)
class Options:
    max_parallel: int = 1
    min_healthy: float = 10.0
    deadline: float = 300.0
    auto_revert: bool = False


@dataclass
class _Follower:
    """The latest snapshot of the watched units, and an event set on each new one."""

    snap: Snapshot = field(default_factory=Snapshot)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    first: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self, client: FleetClient, watched: Sequence[str]) -> None:
        async with aclosing(client.watch_units(watched)) as snaps:
            async for snap in snaps:
                self.snap = snap
                self.changed.set()
                self.first.set()

    async def tick(self, task: asyncio.Task[None]) -> None:
        # asyncio.wait, not wait_for: on 3.11 wait_for can turn Ctrl-C's cancel into a timeout
        waiter = asyncio.ensure_future(self.changed.wait())
        try:
            await asyncio.wait({waiter, task}, timeout=TICK, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        self.changed.clear()
        if task.done():
            task.result()  # the watch failed: its error ends the update
            raise RuntimeError("the watch of the units ended")


def _machine_of(snap: Snapshot, name: str) -> str | None:
    """Where ``name`` is scheduled (else where a machine reports it; None: nowhere)."""
    found = next((s.machine_id for s in snap.schedule if s.name == name), None)
    return found or next((s.machine_id for s in snap.states if s.name == name), None)


def _short_machine(machine: str | None) -> str:
    return machine[:8] if machine else "(no machine)"


async def _roll(
    client: FleetClient,
    follower: _Follower,
    task: asyncio.Task[None],
    units: dict[str, UnitFile],
    records: dict[str, UnitRecord],
    order: Sequence[str],
    opts: Options,
    verb: str,
    keep_going: bool = False,
    written: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Put ``units[n]`` for each of ``order``, max_parallel at a time, each health-gated.

    Returns (names written, names that failed); stops starting new ones at
    the first failure unless ``keep_going``.
    """
    loop = asyncio.get_running_loop()
    pending = list(order)
    flight: dict[str, Watch] = {}
    written = [] if written is None else written
    failed: list[str] = []
    before = {n: _machine_of(follower.snap, n) for n in order}
    while pending or flight:
        if keep_going or not failed:
            for name in next_batch(pending, len(flight), opts.max_parallel):
                pending.remove(name)
                unit = units[name]
                await client.put_unit(unit, records[name].desired)
                written.append(name)
                flight[name] = Watch(name, unit.hash, loop.time())
                out(f"{name}: {verb} to {short_hash(unit.hash)} "
                    f"on {_short_machine(before[name])}")
        elif not flight:
            break
        await follower.tick(task)
        snap, now = follower.snap, loop.time()
        for name, watch in list(flight.items()):
            machine = _machine_of(snap, name)
            state = pick_state(snap.states, name, machine)
            watch = flight[name] = observe(watch, state, now)
            verdict = health(watch, now, opts.min_healthy, opts.deadline)
            if verdict is Health.HEALTHY:
                del flight[name]
                moved = "" if machine == before[name] else \
                    f" (moved from {_short_machine(before[name])})"
                out(f"{name}: healthy, active with {short_hash(watch.hash)} for "
                    f"{now - (watch.active_since or now):.1f}s on {_short_machine(machine)}"
                    f"{moved}")
            elif verdict is Health.FAILED:
                del flight[name]
                failed.append(name)
                why = describe(watch.hash, state, snap.waiting.get(name, ""))
                err(f"{name}: not healthy {opts.deadline:g}s after its update: {why}")
    return written, failed


async def _final(client: FleetClient, instances: Sequence[str]) -> int:
    """Print which instance runs which hash (as reported by its machine); count them."""
    from fleetpy.api.snapshot import read_snapshot

    snap = await read_snapshot(client, instances)
    out("UNIT\tHASH\tACTIVE\tMACHINE")
    for name in instances:
        machine = _machine_of(snap, name)
        state = pick_state(snap.states, name, machine)
        rec = snap.units.get(name)
        digest = state.hash if state else (rec.unit.hash if rec else "")
        active = f"{state.active_state}/{state.sub_state}" if state else "-"
        out(f"{name}\t{short_hash(digest) if digest else '-'}\t{active}\t"
            f"{_short_machine(machine)}")
    return len(instances)


async def rolling_update(client: FleetClient, path: str, opts: Options) -> int:
    """Run the update of the template in ``path``; 0 when every instance got healthy."""
    name = files.unit_name(path)
    if not names.is_template(name):
        raise files.BadInput(f"{name} is not a template unit (such as web@.service): "
                             "rolling-update replaces a template and its instances")
    new, warnings = files.read_unit_file(path, name)
    for warning in warnings:
        err(f"WARNING: Unit {name}: {warning}")
    old_template = await client.get_unit(name)
    records = {r.unit.name: r for r in await client.list_units()}
    plan = plan_rollout(new, records)
    instances = list(plan.launched + plan.others + plan.current)
    old_hash = short_hash(old_template.unit.hash) if old_template else "(none)"
    out(f"rolling-update {name}: template {old_hash} -> {short_hash(new.hash)}; "
        f"{len(plan.launched)} launched instance(s) to update, {opts.max_parallel} at a time"
        + (f"; {len(plan.others)} not launched" if plan.others else "")
        + (f"; {len(plan.current)} already on {short_hash(new.hash)}" if plan.current else ""))
    await client.put_unit(new, old_template.desired if old_template else TargetState.INACTIVE)
    new_units = {n: UnitFile(n, new.contents, new.hash) for n in plan.launched + plan.others}
    follower = _Follower()
    task = asyncio.create_task(follower.follow(client, list(plan.launched)))
    try:
        waiter = asyncio.create_task(follower.first.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        written: list[str] = []
        try:
            written, failed = await _roll(client, follower, task, new_units, records,
                                          plan.launched, opts, "updating", written=written)
        except asyncio.CancelledError:  # Ctrl-C: say what it leaves behind
            err(f"rolling-update {name}: interrupted; new contents written to "
                f"{', '.join(written) or 'no instance'}; the others keep theirs")
            raise
        if failed:
            err(f"rolling-update {name}: stopped at {', '.join(failed)}; "
                f"{len(written) - len(failed)} instance(s) updated and healthy, "
                f"{len(plan.launched) - len(written)} not updated")
            if opts.auto_revert:
                await _revert(client, follower, task, name, old_template, records,
                              revert_order(written, failed), opts)
            await _final(client, instances)
            return 1
        for other in plan.others:
            await client.put_unit(new_units[other], records[other].desired)
            out(f"{other}: contents replaced ({records[other].desired}: no health check)")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await _final(client, instances)
    out(f"rolling-update {name}: done, {len(plan.launched)} instance(s) updated "
        f"to {short_hash(new.hash)}")
    return 0


async def _revert(
    client: FleetClient,
    follower: _Follower,
    task: asyncio.Task[None],
    template: str,
    old_template: UnitRecord | None,
    records: dict[str, UnitRecord],
    order: Sequence[str],
    opts: Options,
) -> None:
    """--auto-revert: the template and ``order`` back to what they were."""
    if old_template is None:
        await client.destroy_unit(template)
        out(f"auto-revert: template {template} destroyed (it was not in the registry)")
    else:
        await client.put_unit(old_template.unit, old_template.desired)
        out(f"auto-revert: template {template} back to {short_hash(old_template.unit.hash)}")
    old = {n: records[n].unit for n in order}
    _, failed = await _roll(client, follower, task, old, records, order, opts,
                            "reverting", keep_going=True)
    done = len(order) - len(failed)
    out(f"auto-revert: {done} of {len(order)} instance(s) back and healthy")
    if failed:
        err(f"auto-revert: not healthy again: {', '.join(failed)}")
