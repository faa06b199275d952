"""drain: cordon a machine, then move its units away a few at a time.

The decisions are fleetpy.engine.drain's (pure): which MachineOf group to
move next, what is moved, stuck, pinned. This command only reads the cluster,
writes the machine's cordon (its ``move``/``stop`` requests, which the engine
honours; the engine stays the only writer of schedule/) and reports.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from fleetpy.ctl.common import CtlEnv, CtlError, err, out, pass_env, run_with_client

if TYPE_CHECKING:
    from fleetpy.ctl.client import FleetClient
    from fleetpy.engine.drain import DrainStep

POLL = 0.5
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
              help="Ask the engine to move every group at once and return (no pacing).")
@click.option("--max-parallel", default=1, show_default=True, type=click.IntRange(min=1),
              help="MachineOf groups moving at a time.")
@click.option("--reason", default="", help="Why (kept with the cordon).")
@click.argument("machine")
@pass_env
def drain(env: CtlEnv, machine: str, deadline: str, stop_global: bool, no_block: bool,
          max_parallel: int, reason: str) -> None:
    """Cordon MACHINE (an ID prefix or its IP: STATE draining), then move its units
    to other machines, honouring their constraints: a MachineOf group moves together,
    max-parallel groups at a time, each running on its new machine before the next
    one moves. A unit pinned by MachineID, or one no other machine can take, stays
    and is reported; with --deadline, what is left then is stopped (it waits until
    the machine is uncordoned). Global units stay unless --stop-global. Ctrl-C
    leaves the machine draining. For several machines: cordon them all, then drain
    them one by one.
    """
    limit = parse_duration(deadline) if deadline else None

    async def action(client: FleetClient) -> int:
        import asyncio
        import time
        from dataclasses import replace

        from fleetpy.ctl.cordon import legend, now_iso, resolve, who
        from fleetpy.engine.drain import plan_drain
        from fleetpy.model.cordon import Cordon, MachineState

        target, current = await resolve(client, machine)
        name = legend(target)
        cordon = current or Cordon(target.id, by=who(), at=now_iso(), reason=reason)
        cordon = replace(cordon, state=MachineState.DRAINING,
                         stop_global=stop_global or cordon.stop_global)
        if current is None or current.state != MachineState.DRAINING:
            await client.put_cordon(cordon)
        out(f"Machine {name} draining")
        ends = None if limit is None else time.monotonic() + limit
        said: set[str] = set()
        stopped: set[str] = set()
        last = ""
        step = None
        try:
            while True:
                schedule, states, waiting = await asyncio.gather(
                    client.list_schedule(), client.list_unit_states(), client.list_waiting())
                passed = ends is not None and time.monotonic() >= ends
                step = plan_drain(cordon, schedule, states, waiting,
                                  10**6 if no_block else max_parallel, passed)
                if step.cordon != cordon:
                    await client.put_cordon(step.cordon)
                    cordon = step.cordon
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
                    last = line
                if no_block:
                    out(f"Machine {name} draining; the engine moves its units "
                        "(fleetctl list-machines, list-unit-files show progress)")
                    return 0
                waiting_deadline = ends is not None and not passed and step.left
                if step.finished and not waiting_deadline:
                    break
                await asyncio.sleep(POLL)
        except asyncio.CancelledError:
            err(f"Machine {name} stays draining ({last or 'nothing moved yet'}); "
                f"fleetctl drain {machine} continues, fleetctl uncordon {machine} ends it")
            raise
        if stopped:
            out(f"Stopped at the deadline: {_names(sorted(stopped))} (they wait until "
                f"the machine is uncordoned or another machine can take them)")
        left = step.left if step is not None else ()
        if left:
            out(f"Machine {name} draining: {len(left)} unit(s) could not move: "
                f"{_names(list(left))} (--deadline stops them)")
            return 1
        out(f"Machine {name} drained: {len(step.moved) if step else 0} unit(s) moved"
            + (f", global units stay: {_names(list(step.staying))}"
               if step is not None and step.staying else ""))
        return 0

    run_with_client(env, action)


COMMANDS: list[click.Command] = [drain]
