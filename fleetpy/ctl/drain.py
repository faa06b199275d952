"""drain: cordon a machine, then move its units away a few at a time.

This command writes the drain into the machine's cordon record (draining, with
its pace: max_parallel, the deadline as a Unix time) and, unless --no-block,
shows the progress fleetd makes. fleetd's engine carries the drain on
(fleetpy.engine.drainer: which MachineOf group moves next, what is stopped at
the deadline, with the pure fleetpy.engine.drain), whether or not a fleetctl
waits: Ctrl-C leaves it going on. The progress shown is the same pure plan on
the same record, as the engine takes it; the engine stays the only writer of
schedule/.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from fleetpy.ctl.common import CtlEnv, CtlError, err, out, pass_env, run_with_client

if TYPE_CHECKING:
    from fleetpy.ctl.client import FleetClient
    from fleetpy.engine.drain import DrainStep
    from fleetpy.model.cordon import Cordon

POLL = 0.5
WRITE_TRIES = 10
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """'90s', '5m', '1h30m', '500ms', '30' -> seconds; CtlError otherwise."""
    spec = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", spec):
        return float(spec)
    parts = _PART.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise CtlError(f"invalid duration {text!r} (e.g. 90s, 5m, 1h30m)")
    return sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


def _names(names: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f", ... {len(names) - 5} more" if len(names) > 5 else "")


def progress(step: DrainStep) -> str:
    line = f"{len(step.moved)} moved, {len(step.left)} left"
    if step.moving:
        line += f" (moving {_names(list(step.moving))})"
    if step.stopping:
        line += f" (stopping {_names(list(step.stopping))})"
    return line


@click.command("drain", short_help="Cordon a machine and move its units away")
@click.option("--deadline", default="", metavar="DURATION",
              help="Stop what is left on the machine after this long (e.g. 5m).")
@click.option("--stop-global", is_flag=True, help="Take global units off the machine too.")
@click.option("--no-block", is_flag=True,
              help="Start the drain and return: fleetd carries it on at the same pace.")
@click.option("--max-parallel", default=None, type=click.IntRange(min=1),
              help="MachineOf groups moving at a time.  [default: 1]")
@click.option("--reason", default="", help="Why (kept with the cordon).")
@click.argument("machine")
@pass_env
def drain(env: CtlEnv, machine: str, deadline: str, stop_global: bool, no_block: bool,
          max_parallel: int | None, reason: str) -> None:
    """Cordon MACHINE (an ID prefix or its IP: STATE draining), then move its units
    to other machines, honouring their constraints: a MachineOf group moves together,
    max-parallel groups at a time, each running on its new machine before the next
    one moves. A unit pinned by MachineID, or one no other machine can take, stays
    and is reported; with --deadline, what is left then is stopped (it waits until
    the machine is uncordoned). Global units stay unless --stop-global. The drain
    is carried on by fleetd (the engine), whether or not this command waits:
    --no-block returns at once, Ctrl-C leaves it going on, fleetctl uncordon ends
    it. drain again shows its progress (flags given change it). For several
    machines: cordon them all, then drain them one by one.
    """
    limit = parse_duration(deadline) if deadline else None

    async def action(client: FleetClient) -> int:
        import asyncio
        import time

        from fleetpy.ctl.cordon import legend, resolve

        target, current = await resolve(client, machine)
        name = legend(target)
        ends = None if limit is None else time.time() + limit
        for _ in range(WRITE_TRIES):  # the engine may write the record meanwhile
            cordon = start_drain(current, target.id, reason, stop_global, max_parallel, ends)
            if cordon == current or await client.update_cordon(cordon, current):
                break
            target, current = await resolve(client, machine)
        else:
            raise CtlError(f"machine {name} kept changing; the drain was not started")
        out(f"Machine {name} draining")
        if no_block:
            out(f"fleetd moves its units "
                f"{cordon.max_parallel} MachineOf group(s) at a time "
                "(fleetctl list-machines, list-unit-files show progress)")
            return 0
        shown: list[str] = []
        try:
            return await follow(client, target.id, name, shown)
        except asyncio.CancelledError:
            err(f"Machine {name} stays draining ({shown[-1] if shown else 'nothing moved yet'})"
                f": fleetd carries the drain on; fleetctl drain {machine} shows its "
                f"progress, fleetctl uncordon {machine} ends it")
            raise

    run_with_client(env, action)


def start_drain(current: Cordon | None, machine_id: str, reason: str, stop_global: bool,
                max_parallel: int | None, deadline: float | None) -> Cordon:
    """The record a drain writes: the machine's cordon, draining, with the flags given
    (those not given keep what an earlier drain of it said)."""
    from dataclasses import replace

    from fleetpy.ctl.cordon import now_iso, who
    from fleetpy.model.cordon import Cordon, MachineState

    cordon = current or Cordon(machine_id, by=who(), at=now_iso(), reason=reason)
    return replace(
        cordon, state=MachineState.DRAINING, stop_global=stop_global or cordon.stop_global,
        max_parallel=cordon.max_parallel if max_parallel is None else max_parallel,
        deadline=cordon.deadline if deadline is None else deadline)


async def follow(client: FleetClient, machine_id: str, name: str, shown: list[str]) -> int:
    """Show the progress fleetd makes with the drain until nothing more can happen
    (each progress line also appended to ``shown``); the exit status: 1 when units
    could not move."""
    import asyncio
    import time

    from fleetpy.engine.drain import deadline_passed, plan_drain
    from fleetpy.model.cordon import MachineState

    said: set[str] = set()
    stopped: set[str] = set()
    last = ""
    step = None
    while True:
        schedule, states, waiting, cordons = await asyncio.gather(
            client.list_schedule(), client.list_unit_states(), client.list_waiting(),
            client.list_cordons())
        cordon = cordons.get(machine_id)
        if cordon is None or cordon.state != MachineState.DRAINING:
            out(f"Machine {name} {'uncordoned' if cordon is None else cordon.state.value}: "
                f"the drain ended ({last or 'nothing moved'})")
            return 1
        passed = deadline_passed(cordon, time.time())
        # the engine's decision, as fleetd takes it: the same pure plan on the same record
        step = plan_drain(cordon, schedule, states, waiting, cordon.max_parallel, passed)
        for unit, why in {**step.pinned, **step.stuck}.items():
            if f"{unit}: {why}" not in said:
                said.add(f"{unit}: {why}")
                out(f"{unit} cannot move: {why}")
        if passed and step.stopping and not stopped:
            out(f"Deadline reached: stopping {_names(list(step.stopping))}")
        stopped |= set(step.stopping)
        line = progress(step)
        if line != last:
            out(line)
            shown.append(line)
            last = line
        waiting_deadline = cordon.deadline is not None and not passed and step.left
        if step.finished and not waiting_deadline:
            break
        await asyncio.sleep(POLL)
    if stopped:
        out(f"Stopped at the deadline: {_names(sorted(stopped))} (they wait until "
            f"the machine is uncordoned or another machine can take them)")
    if step.left:
        out(f"Machine {name} draining: {len(step.left)} unit(s) could not move: "
            f"{_names(list(step.left))} (--deadline stops them)")
        return 1
    out(f"Machine {name} drained: {len(step.moved)} unit(s) moved"
        + (f", global units stay: {_names(list(step.staying))}" if step.staying else ""))
    return 0


COMMANDS: list[click.Command] = [drain]
