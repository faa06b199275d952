"""End-to-end cluster benchmark on a real lab (the core issue's speed goals).

Run as root from the repository root: ``python -m bench.cluster_bench``.
Boots its own lab (``flbench``, 172.17.30.0/24, 3 hosts, 3 etcd members) and
measures, on real etcd, real fleetd and real systemd:

- start --no-block -> reported active/running, p50/p99 over 50 units in turn;
- 300 units started at once until all report active;
- idle cost with 300 running units: etcd RPCs per minute per agent (read from
  every etcd member's /metrics) and fleetd's RSS (main process + its systemd worker);
- ``fleetctl list-units`` wall time with 300 units (the whole command);
- ``fleetctl destroy`` of the 300 running units until no host has any of them.

Results go to the ``cluster`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import time
import urllib.request
from contextlib import aclosing
from pathlib import Path

from bench.report import write_section
from fleetpy.lab import Lab
from fleetpy.model.types import TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.etcd import EtcdRegistry

UNIT = """[Unit]
Description=bench unit %s

[Service]
ExecStart=/bin/sleep infinity
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class StateClock:
    """Follows states/ and records when each unit first reports active/running."""

    def __init__(self, registry: EtcdRegistry) -> None:
        self.registry = registry
        self.active: dict[str, float] = {}
        self.present: set[str] = set()
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async with aclosing(self.registry.watch("states/")) as updates:
            async for update in updates:
                now = time.perf_counter()
                items = (
                    [(k, v, "put") for k, v in update.items.items()]
                    if update.reset
                    else [(e.key, e.value, e.kind) for e in update.events]
                )
                for key, value, kind in items:
                    name = key.rsplit("/", 1)[1]
                    if kind == "delete":
                        self.present.discard(name)
                        continue
                    self.present.add(name)
                    state = json.loads(value)
                    if state.get("active") == "active" and name not in self.active:
                        self.active[name] = now
                self.changed.set()

    async def wait(self, check: object, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not check():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


async def latency(registry: EtcdRegistry, clock: StateClock, count: int) -> list[float]:
    samples = []
    for i in range(count):
        unit = make_unit_file(f"lat{i:03}.service", UNIT % i)
        started = time.perf_counter()
        await registry.create_unit(unit, TargetState.LAUNCHED)
        await clock.wait(lambda n=unit.name: n in clock.active, 30)
        samples.append((clock.active[unit.name] - started) * 1000)
    return samples


async def burst(registry: EtcdRegistry, clock: StateClock, count: int) -> float:
    units = [make_unit_file(f"burst{i:03}.service", UNIT % i) for i in range(count)]
    started = time.perf_counter()
    await asyncio.gather(*(registry.create_unit(u, TargetState.LAUNCHED) for u in units))
    await clock.wait(lambda: all(u.name in clock.active for u in units), 120)
    return max(clock.active[u.name] for u in units) - started


def etcd_rpcs(lab: Lab) -> dict[str, float]:
    counts: dict[str, float] = {}
    pattern = re.compile(r'^grpc_server_started_total\{[^}]*grpc_method="(\w+)"[^}]*\} (\S+)$')
    for url in lab.etcd_endpoints:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if m := pattern.match(line):
                    counts[m[1]] = counts.get(m[1], 0.0) + float(m[2])
    return counts


def fleetd_rss_mb(lab: Lab) -> list[float]:
    """RSS of each of the lab's fleetd (main + systemd worker).

    fleetd processes are found by command line and told apart from other labs'
    by the FLEET_PUBLIC_IP in their environment.
    """
    ips = {f"FLEET_PUBLIC_IP={h.ip}".encode() for h in lab.hosts}
    by_parent: dict[int, float] = {}
    rss: dict[int, float] = {}
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "status").read_text()
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        pid = int(entry.name)
        kb = int(re.search(r"VmRSS:\s+(\d+)", status)[1]) if "VmRSS" in status else 0  # type: ignore[index]
        parents[pid] = int(re.search(r"PPid:\s+(\d+)", status)[1])  # type: ignore[index]
        if "bin/fleetd" in cmdline and environ & ips:
            by_parent[pid] = kb / 1024
        elif "fleetpy.systemd.worker" in cmdline:
            rss[pid] = kb / 1024
    for pid, mb in rss.items():
        if parents.get(pid) in by_parent:
            by_parent[parents[pid]] += mb
    return sorted(by_parent.values())


def fleetctl(env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run(["fleetctl", *args], env=env, capture_output=True, text=True,
                            check=False, timeout=300)
    return time.perf_counter() - started, result


async def main_async(lab: Lab, idle_seconds: float) -> str:
    env = {**os.environ, **lab.env()}
    registry = EtcdRegistry(",".join(lab.etcd_endpoints), "/fleetpy/")
    clock = StateClock(registry)
    follower = asyncio.create_task(clock.run())
    try:
        deadline = time.monotonic() + 30
        while len(await registry.list_machines()) < len(lab.hosts):
            if time.monotonic() > deadline:
                raise RuntimeError("fleetd did not register on every host")
            await asyncio.sleep(0.2)
        lat = await latency(registry, clock, 50)
        for i in range(50):
            await registry.destroy_unit(f"lat{i:03}.service")
        await clock.wait(lambda: not any(n.startswith("lat") for n in clock.present), 60)
        burst_s = await burst(registry, clock, 300)
        await asyncio.sleep(3)
        before = etcd_rpcs(lab)
        await asyncio.sleep(idle_seconds)
        after = etcd_rpcs(lab)
        rpcs = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        per_agent_min = sum(rpcs.values()) / len(lab.hosts) * 60 / idle_seconds
        rss = fleetd_rss_mb(lab)
        times = [fleetctl(env, "list-units")[0] for _ in range(10)]
        rows = fleetctl(env, "list-units", "--no-legend")[1].stdout.count("\n")
        names = [f"burst{i:03}.service" for i in range(300)]
        destroy_s, result = fleetctl(env, "destroy", *names)
        assert result.returncode == 0, result.stderr
        leftover = 0
        for host in lab.hosts:
            listing = lab.exec(host.name, ["ls", "/run/fleet/units"]).stdout.split()
            leftover += sum(1 for n in listing if n.startswith("burst"))
    finally:
        follower.cancel()
        await registry.close()
    busy = ", ".join(f"{k} {v:.0f}" for k, v in sorted(rpcs.items()) if v)
    return "\n".join([
        "| measure | result | aim |",
        "|---|---|---|",
        f"| start -> active/running, 50 units in turn | p50 {statistics.median(lat):.0f} ms, "
        f"p99 {percentile(lat, 0.99):.0f} ms, max {max(lat):.0f} ms | p50 < 150 ms, "
        "p99 < 500 ms |",
        f"| 300 units started at once, all active | {burst_s:.2f} s | < 10 s |",
        f"| idle etcd RPCs per agent per minute, 300 units running ({idle_seconds:.0f} s "
        f"window; all 3 fleetd incl. the engine) | {per_agent_min:.1f} ({busy or 'none'}) "
        "| <= 6 |",
        f"| fleetd RSS with 300 units (main + systemd worker), per host | "
        f"{', '.join(f'{m:.1f}' for m in rss)} MB | < 60 MB |",
        f"| `fleetctl list-units` wall time, {rows} rows (10 runs) | median "
        f"{statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms "
        "| < 150 ms |",
        f"| `fleetctl destroy` of 300 running units until gone from every host | "
        f"{destroy_s:.2f} s ({leftover} unit files left on hosts) | < 5 s |",
        "",
        "start -> active is measured from the registry write `fleetctl start --no-block` "
        "makes to the moment the agent's state report (active) reaches a watcher on the "
        "machine; it includes the engine placing the unit, the agent writing, linking, "
        "daemon-reload and StartUnit, and systemd's signal.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    lab = Lab(name="flbench", subnet="172.17.30.0/24")
    if lab.is_up():
        lab.down()
    lab.up(hosts=3, etcd_members=3)
    try:
        body = asyncio.run(main_async(lab, args.idle_seconds))
    finally:
        lab.down()
    print(body)
    write_section("cluster", "python -m bench.cluster_bench", body)


if __name__ == "__main__":
    main()
