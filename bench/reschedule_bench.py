"""Time from a host stop to its units running elsewhere (issue 4's speed goal).

Run as root from the repository root: ``python -m bench.reschedule_bench``.
Boots its own lab (``flresched``, 172.17.41.0/24, 3 hosts, 3 etcd members,
fleetd with agent_ttl 5 s). Each run puts 100 units on one host (the other two
are powered off while the units are started, then booted again: they join and
take nothing, as existing units do not move), then stops that host and follows
the registry until every one of the 100 units reports active on another host:

- poweroff: ``fleetlab host-stop`` (systemd shuts the host down; fleetd sees
  the machine stopping and leaves the cluster at once);
- crash: ``fleetlab host-stop --kill`` (SIGKILL of the host's PID 1: nothing
  is said, the machine's lease expires after agent_ttl).

fleet v1.0.0 on the same kind of lab: 9.3 s after a poweroff of a host with
100 units, 11.8 s after a crash with 150. Aim: under agent_ttl + 1 s.
Results go to the ``reschedule`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from contextlib import aclosing
from dataclasses import dataclass, field

from bench.report import write_section
from fleetpy.lab import Lab
from fleetpy.model.types import TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.etcd import EtcdRegistry

TTL = 5
UNIT = "[Unit]\nDescription=reschedule bench unit {i}\n\n[Service]\nExecStart=/bin/sleep infinity\n"
COMMAND = "python -m bench.reschedule_bench"


@dataclass
class Follower:
    """Follows machines/, schedule/ and states/: when each event of a move happens."""

    registry: EtcdRegistry
    target: str = ""  # the machine being stopped
    t0: float = 0.0
    machine_gone: float | None = None
    scheduled_elsewhere: dict[str, float] = field(default_factory=dict)
    active: dict[str, tuple[str, float]] = field(default_factory=dict)  # unit -> (machine, t)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with aclosing(self.registry.watch("")) as updates:
            async for update in updates:
                now = time.perf_counter()
                items = (
                    [(k, v, "put") for k, v in update.items.items()] if update.reset
                    else [(e.key, e.value, str(e.kind)) for e in update.events]
                )
                for key, value, kind in items:
                    self._event(key, value, kind, now)
                self.changed.set()

    def _event(self, key: str, value: bytes, kind: str, now: float) -> None:
        parts = key.split("/")
        if parts[0] == "machines" and kind == "delete" and parts[1] == self.target:
            self.machine_gone = self.machine_gone or now
        elif parts[0] == "schedule" and kind == "put" and parts[1] != self.target:
            self.scheduled_elsewhere.setdefault(parts[2], now)
        elif parts[0] == "states" and len(parts) == 3:
            if kind == "delete":
                if self.active.get(parts[2], ("", 0.0))[0] == parts[1]:
                    del self.active[parts[2]]
            elif (json.loads(value).get("active") == "active"
                  and self.active.get(parts[2], ("", 0.0))[0] != parts[1]):
                self.active[parts[2]] = (parts[1], now)

    def reset(self, target: str) -> None:
        self.target, self.t0, self.machine_gone = target, time.perf_counter(), None
        self.scheduled_elsewhere.clear()

    async def wait(self, check: object, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not check():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Run:
    kind: str
    units: int
    stop_call: float  # host_stop returned
    machine_gone: float
    rescheduled: float
    running: float


async def one_run(lab: Lab, registry: EtcdRegistry, follow: Follower, target: str,
                  kind: str, count: int) -> Run:
    hosts = {h.name: h for h in lab.hosts}
    others = [n for n in hosts if n != target]
    mid = hosts[target].machine_id
    # 1. every unit on the target: the others are off while the units are placed.
    for name in others:
        await asyncio.to_thread(lab.host_stop, name)
    deadline = time.monotonic() + 30
    while len(await registry.list_machines()) != 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the other machines did not leave")
        await asyncio.sleep(0.1)
    names = [f"move{i:03}.service" for i in range(count)]
    await asyncio.gather(*(
        registry.create_unit(make_unit_file(n, UNIT.format(i=i)), TargetState.LAUNCHED)
        for i, n in enumerate(names)
    ))
    await follow.wait(lambda: all(follow.active.get(n, ("",))[0] == mid for n in names), 120)
    for name in others:
        await asyncio.to_thread(lab.host_start, name)
    deadline = time.monotonic() + 30
    while len(await registry.list_machines()) != len(hosts):
        if time.monotonic() > deadline:
            raise RuntimeError("the other machines did not join")
        await asyncio.sleep(0.1)
    await asyncio.sleep(TTL / 3 * 2)  # keepalives at their usual pace again
    # 2. stop the target and follow the move.
    follow.reset(mid)
    await asyncio.to_thread(lab.host_stop, target, kind == "crash")
    stop_call = time.perf_counter() - follow.t0
    await follow.wait(
        lambda: all(follow.active.get(n, (mid,))[0] != mid for n in names), TTL + 60)
    done = max(follow.active[n][1] for n in names) - follow.t0
    rescheduled = max(follow.scheduled_elsewhere[n] for n in names) - follow.t0
    gone = (follow.machine_gone or follow.t0) - follow.t0
    # 3. the host comes back; the units stay where they are; clean up.
    await asyncio.to_thread(lab.host_start, target)
    for n in names:
        await registry.destroy_unit(n)
    await follow.wait(lambda: not any(n in follow.active for n in names), 60)
    return Run(kind, count, stop_call, gone, rescheduled, done)


def summary(runs: list[Run], kind: str) -> str:
    rs = [r for r in runs if r.kind == kind]

    def cell(values: list[float]) -> str:
        return (f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"
                if len(values) > 1 else f"{values[0]:.2f} s")

    return (f"| {kind} | {len(rs)} | {rs[0].units} | {cell([r.stop_call for r in rs])} | "
            f"{cell([r.machine_gone for r in rs])} | {cell([r.rescheduled for r in rs])} | "
            f"**{cell([r.running for r in rs])}** |")


async def main_async(lab: Lab, runs: int, count: int) -> str:
    registry = EtcdRegistry(",".join(lab.etcd_endpoints), "/fleetpy/")
    follow = Follower(registry)
    task = asyncio.create_task(follow.run())
    results: list[Run] = []
    try:
        while len(await registry.list_machines()) < len(lab.hosts):
            await asyncio.sleep(0.2)
        hosts = [h.name for h in lab.hosts]
        for i in range(runs):
            for kind in ("poweroff", "crash"):
                run = await one_run(lab, registry, follow, hosts[i % len(hosts)], kind, count)
                print(f"{kind} of {hosts[i % len(hosts)]}: all {count} units active elsewhere "
                      f"after {run.running:.2f} s", flush=True)
                results.append(run)
    finally:
        task.cancel()
        await registry.close()
    return "\n".join([
        f"3 hosts, fleetd agent_ttl {TTL} s; {count} units (`sleep infinity`) on the stopped "
        f"host; {runs} runs of each kind, the stopped host in turn (median, min-max). Times "
        "from the host-stop call: the call returned, the machine's key left etcd, the last "
        "unit scheduled elsewhere, the last unit reporting active elsewhere.",
        "",
        "| stop | runs | units | host-stop returned | machine gone | all rescheduled "
        "| all running elsewhere |",
        "|---|---|---|---|---|---|---|",
        summary(results, "poweroff"),
        summary(results, "crash"),
        "",
        f"Aim: under agent_ttl + 1 s = {TTL + 1} s. fleet v1.0.0 on the same kind of lab: "
        "9.3 s after a poweroff of a host with 100 units, 11.8 s after a crash with 150.",
        "",
        "A poweroff is seen at once: fleetd on a machine that is shutting down revokes its "
        "lease, so the engine moves the units while the host is still stopping. A crash says "
        "nothing: the lease expires between 2/3 x agent_ttl and agent_ttl after the last "
        "keepalive (sent every ttl/3), then one engine pass and the agents' start.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 run, 20 units, nothing written")
    args = parser.parse_args()
    runs, count = (1, 20) if args.quick else (args.runs, args.units)
    lab = Lab(name="flresched", subnet="172.17.41.0/24")
    if lab.is_up():
        lab.down()
    lab.up(hosts=3, etcd_members=3, fleet_env={"FLEET_AGENT_TTL": str(TTL)})
    try:
        body = asyncio.run(main_async(lab, runs, count))
    finally:
        lab.down()
    print(body)
    if not args.quick:
        write_section("reschedule", COMMAND, body)


if __name__ == "__main__":
    main()
