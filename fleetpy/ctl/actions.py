"""What the unit commands do (submit, load, start, stop, unload, destroy, restart, cat).

Each function validates every argument first and raises BadInput before any
write, so a bad argument leaves the registry unchanged. Returns the exit code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as replace_record

from fleetpy.ctl import files
from fleetpy.ctl.client import FleetClient
from fleetpy.ctl.common import CtlEnv, err, out, run_with_client, stderr_is_tty
from fleetpy.ctl.files import BadInput, Wanted
from fleetpy.ctl.state import is_global
from fleetpy.ctl.wait import Goal, Progress, wait_units
from fleetpy.model import names as unit_names
from fleetpy.model.types import TargetState
from fleetpy.registry.base import UnitRecord


@dataclass(frozen=True, slots=True)
class Blocking:
    no_block: bool = False
    attempts: int = 0
    tty: bool = False


def _report(errors: Sequence[str]) -> int:
    for e in errors:
        err(f"Error waiting for units: {e}")
    return 1 if errors else 0


async def _get_all(client: FleetClient, names: Sequence[str]) -> list[UnitRecord | None]:
    """The records of ``names`` in order (one request for all of them)."""
    if not names:
        return []
    found = await client.get_units(names)
    return [found.get(n) for n in names]


async def create_units(
    client: FleetClient, args: Sequence[str], replace: bool, verb: str | None = None,
    desired: TargetState = TargetState.INACTIVE, created_here: set[str] | None = None,
) -> dict[str, UnitRecord]:
    """Make sure every argument's unit is in the registry; return them by name.

    ``verb`` (load/start) refuses templates. Prints ``Unit X inactive`` for each
    unit created, and warns when a local file differs from the registry copy
    (or replaces it with ``replace``). New units are created ``desired`` (start:
    launched at once, MachineOf followers after their targets, instead of created
    inactive and then raised: half the writes for 10,000 new units); their names
    are added to ``created_here``.
    """
    pairs = files.dedupe(args)
    if verb is not None:
        files.refuse_templates([n for _, n in pairs], verb)
    existing = await _get_all(client, [n for _, n in pairs])
    tmpl_names = {
        t for (arg, name), rec in zip(pairs, existing, strict=True)
        if rec is None and (t := unit_names.template_of(name)) is not None
    }
    tmpl_list = sorted(tmpl_names)
    templates = dict(zip(tmpl_list, await _get_all(client, tmpl_list), strict=True))
    wanted: list[Wanted] = []
    for (arg, name), rec in zip(pairs, existing, strict=True):
        tmpl = unit_names.template_of(name)
        wanted.append(files.resolve_local(
            arg, name, rec, templates.get(tmpl) if tmpl else None, replace))

    result: dict[str, UnitRecord] = {}
    fresh = {w.name: UnitRecord(unit=w.local, desired=desired)
             for w in wanted if w.existing is None and w.local is not None}
    created: dict[str, bool] = {}
    for wave in machine_of_waves(fresh) if desired is not TargetState.INACTIVE else [fresh]:
        if wave:
            created.update(await client.create_units([fresh[n].unit for n in wave], desired))
    for w in wanted:
        for warning in w.warnings:
            err(f"WARNING: Unit {w.name}: {warning}")
        if w.existing is None:
            assert w.local is not None
            if created[w.name]:
                out(f"Unit {w.name} inactive")  # fleet's words, whatever it was created as
                result[w.name] = UnitRecord(unit=w.local, desired=desired)
                if created_here is not None:
                    created_here.add(w.name)
                continue
            w = Wanted(w.arg, w.name, await client.get_unit(w.name), w.local, w.source)
            if w.existing is None:
                raise BadInput(f"unit {w.name} vanished while it was being created")
        if w.local is not None and w.local.hash != w.existing.unit.hash:
            if replace:
                await client.put_unit(w.local, w.existing.desired)
                result[w.name] = UnitRecord(unit=w.local, desired=w.existing.desired)
                continue
            kind = "local unit file" if w.source == w.arg else "local template unit file"
            err(f"WARNING: Unit {w.name} in registry differs from {kind} {w.source}")
        result[w.name] = w.existing
    return result


async def submit(client: FleetClient, args: Sequence[str], replace: bool) -> int:
    await create_units(client, args, replace)
    return 0


def machine_of_waves(records: Mapping[str, UnitRecord]) -> list[list[str]]:
    """Names in waves, each MachineOf follower in a wave after the units it follows.

    Raising the desired state of ``nginx@1`` before that of its follower
    ``nginx-discovery@1`` (MachineOf=nginx@1) spares the user the engine's
    passing reason "waiting for nginx@1 to be scheduled".
    """
    from fleetpy.model.xfleet import xfleet_of

    follows: dict[str, set[str]] = {}
    for name, rec in records.items():
        try:
            targets = xfleet_of(name, rec.unit.contents).machine_of
        except ValueError:
            targets = ()
        follows[name] = {t for t in targets if t in records and t != name}
    waves: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(records):
        wave = [n for n in records if n not in done and follows[n] <= done]
        wave = wave or [n for n in records if n not in done]  # a cycle: the rest together
        waves.append(wave)
        done.update(wave)
    return waves


async def _set_and_wait(
    client: FleetClient,
    records: dict[str, UnitRecord],
    target: TargetState,
    goal: Goal,
    verb: str,
    block: Blocking,
    *,
    only_raise: bool = False,
) -> int:
    """Set the desired state (MachineOf followers after their targets), then wait.

    ``only_raise`` (load, start) leaves a unit already desired higher alone:
    loading a launched unit does not stop it.
    """
    for wave in machine_of_waves(records):
        change = [
            name for name in wave
            if (rec := records[name]).desired != target
            and not (only_raise and rec.desired is TargetState.LAUNCHED)
        ]
        if change:
            await client.set_desired_many(change, target)
    return await _announce_and_wait(client, records, goal, verb, block)


async def load(client: FleetClient, args: Sequence[str], replace: bool, block: Blocking) -> int:
    records = await create_units(client, args, replace, verb="load")
    return await _set_and_wait(
        client, records, TargetState.LOADED, Goal.LOADED, "load", block, only_raise=True)


async def start(client: FleetClient, args: Sequence[str], replace: bool, block: Blocking) -> int:
    """Raise to launched. A unit fleet launched that failed or finished is started again:
    lowered to loaded first (and that awaited, --no-block too), then raised."""
    created: set[str] = set()
    records = await create_units(client, args, replace, verb="start",
                                 desired=TargetState.LAUNCHED, created_here=created)
    again = await _failed_or_finished(
        client, {n: r for n, r in records.items() if n not in created})
    if again:
        await client.set_desired_many(again, TargetState.LOADED)
        goals = dict.fromkeys(again, Goal.LOADED)
        errors = await wait_units(client, goals, block.attempts, Progress(block.tty),
                                  dict.fromkeys(again, ""))
        if errors:
            return _report(errors)
        for name in again:
            records[name] = replace_record(records[name], desired=TargetState.LOADED)
    return await _set_and_wait(
        client, records, TargetState.LAUNCHED, Goal.LAUNCHED, "start", block)


async def _failed_or_finished(client: FleetClient, records: Mapping[str, UnitRecord]) -> list[str]:
    """Units desired launched whose start fleet made failed or finished (STATE says so)."""
    from fleetpy.api.snapshot import read_snapshot
    from fleetpy.ctl.state import FAILED, FINISHED, views

    names = [n for n, r in records.items()
             if r.desired is TargetState.LAUNCHED and not is_global(r.unit.contents)]
    if not names:
        return []
    snap = await read_snapshot(client, names)
    seen = views(snap, names)
    return [n for n in names if seen[n].shown in (FAILED, FINISHED)]


async def find_units(client: FleetClient, args: Sequence[str]) -> dict[str, UnitRecord]:
    """The named units, all of which must exist (``Unit X not found`` otherwise)."""
    pairs = files.dedupe(args)
    records = await _get_all(client, [n for _, n in pairs])
    missing = [n for (_, n), r in zip(pairs, records, strict=True) if r is None]
    if missing:
        raise BadInput("\n".join(f"Unit {n} not found" for n in missing), plain=True)
    return {n: r for (_, n), r in zip(pairs, records, strict=True) if r is not None}


async def stop(client: FleetClient, args: Sequence[str], block: Blocking) -> int:
    records = await find_units(client, args)
    for name, rec in records.items():
        if rec.desired is TargetState.INACTIVE and not is_global(rec.unit.contents):
            raise BadInput(
                f"Unable to stop unit {name} in state {TargetState.INACTIVE}", plain=True)
    return await _set_and_wait(client, records, TargetState.LOADED, Goal.LOADED, "stop", block)


async def unload(client: FleetClient, args: Sequence[str], block: Blocking) -> int:
    records = await find_units(client, args)
    return await _set_and_wait(
        client, records, TargetState.INACTIVE, Goal.INACTIVE, "unload", block)


async def _announce_and_wait(
    client: FleetClient,
    records: dict[str, UnitRecord],
    goal: Goal,
    verb: str,
    block: Blocking,
) -> int:
    """Say what was triggered (global units, --no-block) or wait for the rest."""
    waiting: dict[str, Goal] = {}
    for name, rec in records.items():
        if is_global(rec.unit.contents):
            out(f"Triggered global unit {name} {verb}")
        elif block.no_block:
            out(f"Triggered unit {name} {verb}")
        else:
            waiting[name] = goal
    return _report(await wait_units(client, waiting, block.attempts, Progress(block.tty)))


async def destroy(client: FleetClient, args: Sequence[str], block: Blocking) -> int:
    records = await find_units(client, args)
    await client.destroy_units(list(records))
    errors: list[str] = []
    if not block.no_block:
        goals = {name: Goal.GONE for name in records}
        silent = dict.fromkeys(records, "")
        errors = await wait_units(client, goals, block.attempts, Progress(block.tty), silent)
    for name in records:  # in the order given, as fleet prints them
        if not any(e.startswith(f"Unit {name} ") for e in errors):
            out(f"Destroyed {name}")  # not when it is still on a machine (a refused stop)
    return _report(errors)


async def restart(client: FleetClient, args: Sequence[str], block: Blocking) -> int:
    """Stop then start, one unit after the other (a rolling restart)."""
    records = await find_units(client, args)
    for name, rec in records.items():
        if rec.desired is TargetState.INACTIVE and not is_global(rec.unit.contents):
            raise BadInput(
                f"Unable to restart unit {name} in state {TargetState.INACTIVE}", plain=True)
    for name, rec in records.items():
        if is_global(rec.unit.contents):
            await client.set_desired(name, TargetState.LOADED)
            await client.set_desired(name, TargetState.LAUNCHED)
            out(f"Triggered global unit {name} restart")
            continue
        if rec.desired is TargetState.LAUNCHED:
            await client.set_desired(name, TargetState.LOADED)
            errors = await wait_units(
                client, {name: Goal.LOADED}, block.attempts, Progress(block.tty))
            if errors:
                return _report(errors)
        await client.set_desired(name, TargetState.LAUNCHED)
        errors = await wait_units(
            client, {name: Goal.LAUNCHED}, block.attempts, Progress(block.tty))
        if errors:
            return _report(errors)
    return 0


async def cat(client: FleetClient, arg: str) -> int:
    name = files.unit_name(arg)
    rec = await client.get_unit(name)
    if rec is None:
        raise BadInput(f"Unit {name} not found", plain=True)
    out(rec.unit.contents, nl=False)
    return 0


def run_unit_command(
    env: CtlEnv, verb: str, units: Sequence[str], no_block: bool = False,
    block_attempts: int = 0, replace: bool = False,
) -> None:
    """``fleetctl load|start|stop|unload|destroy UNIT...``: the work of the click command
    (fleetpy.ctl.units) and of the quick path without click (fleetpy.ctl.quick)."""
    block = Blocking(no_block=no_block, attempts=block_attempts, tty=stderr_is_tty())
    work: dict[str, Callable[[FleetClient], Awaitable[int]]] = {
        "load": lambda c: load(c, units, replace, block),
        "start": lambda c: start(c, units, replace, block),
        "stop": lambda c: stop(c, units, block),
        "unload": lambda c: unload(c, units, block),
        "destroy": lambda c: destroy(c, units, block),
    }
    run_with_client(env, work[verb])
