"""Where a blocking ``fleetctl start`` of one unit spends its time, on a real lab.

A watcher on the whole registry (this process, on the lab's etcd) stamps each
event of the start on this machine's clock; the command is a new process, as a
user starts it. Used by bench/ctl_bench.py.

Events of one run (all times from the command's start):

- ``created``: ``units/<name>`` appears (fleetctl has started, imported its
  modules, read the unit, asked whether it exists and created it);
- ``desired``: its desired state becomes launched (the next request);
- ``scheduled``: ``schedule/<machine>/<name>`` appears (the engine placed it);
- ``reported``: the agent's first state report of it (written, linked, no
  daemon-reload for a unit new to systemd (fleetpy.agent.reload), StartUnit
  called, systemd's state read);
- ``launched``: its report says ``launched`` (the start settled: up for the
  agent's settle time after the agent saw it up, fleetpy.agent.settle);
- ``returned``: the command returned (fleetctl's watch saw it launched,
  printed, and the process exited).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from fleetpy.registry.etcd import EtcdRegistry

EVENTS = ("created", "desired", "scheduled", "reported", "launched", "returned")
SPANS = (
    ("created", "command started -> unit created (start-up, imports, its requests)"),
    ("desired", "unit created -> desired launched (0 when it is created launched)"),
    ("scheduled", "desired launched -> scheduled (the engine)"),
    ("reported", "scheduled -> first state report (the agent: file, link, StartUnit, the "
                 "settle when the report waits for it, report; a daemon-reload only if "
                 "systemd had the unit loaded)"),
    ("launched", "first report -> report says launched (the settle, when the first report "
                 "came before it)"),
    ("returned", "launched -> command returned (the watch stream to fleetctl, print, exit)"),
)


@dataclass
class Stamps:
    """When each event of each unit was first seen (perf_counter of this process)."""

    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def mark(self, name: str, event: str, at: float) -> None:
        self.seen.setdefault(name, {}).setdefault(event, at)
        self.changed.set()

    async def follow(self, registry: EtcdRegistry) -> None:
        async with aclosing(registry.watch("")) as updates:
            async for update in updates:
                now = time.perf_counter()
                if update.reset:
                    continue
                for e in update.events:
                    if str(e.kind) != "put":
                        continue
                    kind, _, rest = e.key.partition("/")
                    name = rest.rsplit("/", 1)[-1]
                    value = json.loads(e.value)
                    if kind == "units":
                        self.mark(name, "created", now)
                        if value.get("desired") == "launched":
                            self.mark(name, "desired", now)
                    elif kind == "schedule":
                        self.mark(name, "scheduled", now)
                    elif kind == "states":
                        self.mark(name, "reported", now)
                        if value.get("fleet") == "launched":
                            self.mark(name, "launched", now)


UNIT = "[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/sleep infinity\n"


async def blocking_starts(registry: EtcdRegistry, fleetctl: str, env: dict[str, str],
                          workdir: Path, runs: int) -> list[dict[str, float]]:
    """``runs`` blocking starts of new units in turn: each run's events, in seconds
    from the command's start."""
    stamps = Stamps()
    follower = asyncio.create_task(stamps.follow(registry))
    await asyncio.sleep(0.5)  # the watch is open
    timelines = []
    try:
        for i in range(runs):
            name = f"bench-start-{os.getpid()}-{i:03}.service"
            (workdir / name).write_text(UNIT.format(name=name))
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                fleetctl, "start", name, cwd=workdir, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
            returned = time.perf_counter()
            if proc.returncode:
                raise RuntimeError(f"fleetctl start {name}: {err.decode()[-400:]}")
            await asyncio.sleep(0.05)  # the watcher has the last event
            line = {e: at - t0 for e, at in stamps.seen.get(name, {}).items()}
            line["returned"] = returned - t0
            timelines.append(line)
    finally:
        follower.cancel()
    return timelines


def spans(timelines: list[dict[str, float]]) -> list[tuple[str, float, float]]:
    """(span, median ms, max ms) of each step between consecutive events."""
    rows = []
    for i, (event, label) in enumerate(SPANS):
        before = EVENTS[i - 1] if i else None
        values = [t[event] - (t[before] if before else 0.0) for t in timelines
                  if event in t and (before is None or before in t)]
        if values:
            rows.append((label, statistics.median(values) * 1000, max(values) * 1000))
    return rows
