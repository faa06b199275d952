"""The scale bench of issue 13: 3 real hosts + hollow machines, thousands of units.

Run as root from the repository root: ``python -m bench scale`` (full) or
``python -m bench scale --quick`` (small, for CI: it checks the bench runs,
not its figures). ``--doc PATH`` writes the section to another file than
docs/benchmarks.md.

One lab, booted by the bench and always torn down (full: ``flscale``,
172.17.60.0/24; quick: ``flscalq``, 172.17.61.0/24): 3 etcd members, 3 real
hosts (real fleetd, real systemd), fleetd's agent_ttl for the whole lab (full:
fleetd's default 30 s, quick 5 s; hollow machines take it too). In order:

1. 3-host part, before any hollow machine joins: blocking ``fleetctl start``
   of one unit (cold process, in turn), ``fleetctl start --no-block`` of unit
   files until all run, ``list-units`` with those rows, ``destroy`` of them
   until none is on any host.
2. Hollow machines join (``Lab.hollow_up``, 2 processes); 3 templates are
   submitted; ``fleetctl start --no-block`` of every instance (conflict@ with
   ``Conflicts=conflict@*``, follower@ with ``MachineOf=conflict@%i``, free@).
3. Idle with everything running: etcd requests per machine per minute, the
   engine's CPU and RSS.
4. ``list-units`` with all rows and ``list-machines`` (cold processes).
5. Hollow machines crash at once (``Lab.hollow_kill``): their units move.
6. The leader fleetd is SIGKILLed and left stopped; a new unit is started
   through another host's API.

fleetctl talks to the first host's fleetd API (``fleetlab env``) unless said.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.report import write_section
from bench.scale_failures import crash, leader_host, leader_kill
from bench.scale_watch import (
    Follower,
    Row,
    children,
    cpu_seconds,
    etcd_requests,
    fleetd_pid,
    ms,
    other_labs,
    rss_mib,
    secs,
)
from fleetpy.lab import Lab, LabError
from fleetpy.lab.state import FLEET_API_PORT
from fleetpy.registry.etcd import EtcdRegistry

FLEETCTL = str(Path(sys.executable).with_name("fleetctl"))
SLEEPER = "[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/sleep infinity\n"
TEMPLATES = {
    "conflict@.service": "[X-Fleet]\nConflicts=conflict@*.service\n",
    "follower@.service": "[X-Fleet]\nMachineOf=conflict@%i.service\n",
    "free@.service": "",
}
# Row labels of the section, in order; the suite checks that each is present.
MEASURES = (
    "start --no-block, all instances: command",
    "start --no-block, all instances: all active",
    "idle etcd requests per machine per minute",
    "idle engine CPU (leader fleetd)",
    "leader fleetd RSS",
    "list-units, all rows",
    "list-machines, all machines",
    "hollow machines crash: units active elsewhere",
    "hollow machines crash: most machines reporting one unit active",
    "leader fleetd killed: new unit active",
    "leader fleetd killed: most schedule/ entries of one unit",
    "3 hosts: list-units",
    "3 hosts: blocking start of one unit",
    "3 hosts: start --no-block of unit files, all active",
    "3 hosts: destroy, none left on any host",
)


@dataclass(frozen=True)
class Size:
    name: str
    subnet: str
    ttl: int
    hollow: int
    conflict: int
    free: int
    idle: float
    kill: int
    small: int  # unit files in the 3-host part
    starts: int  # blocking starts, in turn
    runs: int  # cold list runs

    @property
    def units(self) -> int:
        return 2 * self.conflict + self.free


QUIET = 2.0  # seconds without a state or schedule change: the cluster is quiet
FULL = Size("flscale", "172.17.60.0/24", 30, 1000, 800, 8400, 60.0, 100, 300, 20, 5)
QUICK = Size("flscalq", "172.17.61.0/24", 5, 20, 16, 168, 10.0, 4, 30, 5, 3)
START_DELAY = 0.1  # hollow machines' activating -> active


@dataclass
class Bench:
    lab: Lab
    size: Size
    follow: Follower
    tmp: Path
    rows: dict[str, Row] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row(self, label: str, span: str, result: str, aim: str = "",
            met: bool | None = None) -> None:
        assert label in MEASURES, label
        self.rows[label] = Row(label, span, result, aim, met)

    def env(self, host_ip: str | None = None) -> dict[str, str]:
        env = {**os.environ, **self.lab.env()}
        if host_ip is not None:
            env["FLEETCTL_ENDPOINT"] = f"http://{host_ip}:{FLEET_API_PORT}"
        return env

    def fleetctl(self, *args: str, host_ip: str | None = None,
                 timeout: float = 300) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run fleetctl as a user would (a new process); its wall time and result."""
        started = time.perf_counter()
        result = subprocess.run([FLEETCTL, *args], env=self.env(host_ip), cwd=self.tmp,
                                capture_output=True, text=True, check=False, timeout=timeout)
        return time.perf_counter() - started, result

    def ok(self, *args: str, host_ip: str | None = None) -> float:
        took, result = self.fleetctl(*args, host_ip=host_ip)
        if result.returncode != 0:
            raise RuntimeError(f"fleetctl {args[0]} exited {result.returncode}: "
                               f"{(result.stderr or result.stdout)[-500:]}")
        return took

    def cold(self, *args: str) -> tuple[float, int]:
        """Median wall time of ``runs`` cold runs, and the rows of the last one."""
        times, rows = [], 0
        for _ in range(self.size.runs):
            took, result = self.fleetctl(*args, "--no-legend")
            times.append(took)
            rows = result.stdout.count("\n")
        return statistics.median(times), rows

    def files(self, names: list[str]) -> list[str]:
        for n in names:
            (self.tmp / n).write_text(SLEEPER.format(name=n))
        return names

    async def on_hosts(self, names: set[str]) -> int:
        """How many of ``names`` are unit files fleetd wrote on the real hosts."""
        found = 0
        for host in self.lab.hosts:
            out = await asyncio.to_thread(self.lab.exec, host.name, ["ls", "/run/fleet/units"])
            found += len(names & set(out.stdout.split()))
        return found


async def three_hosts(b: Bench) -> None:
    """Part 1: the 3-host lab as a user sees it, before the hollow machines join."""
    s = b.size
    times = []
    for i in range(s.starts):
        times.append(b.ok("start", b.files([f"one{i:02}.service"])[0]))
    b.row("3 hosts: blocking start of one unit", "`fleetctl start UNITFILE` started -> "
          f"returned (unit launched), cold process, {s.starts} units in turn",
          f"p50 {ms(statistics.median(times))}, max {ms(max(times))}", "p50 < 300 ms",
          statistics.median(times) < 0.3)
    b.ok("destroy", *[f"one{i:02}.service" for i in range(s.starts)])
    names = b.files([f"small{i:03}.service" for i in range(s.small)])
    t0 = time.perf_counter()
    command = b.ok("start", "--no-block", *names)
    done = await b.follow.until(lambda: all(n in b.follow.first_active for n in names), 120)
    b.row("3 hosts: start --no-block of unit files, all active",
          f"`fleetctl start --no-block` of {s.small} unit files started -> the last one "
          f"reported active on its host (command itself: {secs(command)})",
          secs(done - t0) if done else "not all active after 120 s", "< 5 s",
          done is not None and done - t0 < 5)
    busy, _ = b.cold("list-units")  # right after the start: agents still reporting
    quiet = await b.follow.quiet(QUIET, 30)
    median, rows = b.cold("list-units")
    b.row("3 hosts: list-units", f"`fleetctl list-units` started -> returned, {rows} rows, "
          f"cold process, median of {s.runs}, the cluster quiet (no state or schedule change "
          f"for {QUIET:g} s{'' if quiet else ': NOT reached in 30 s'}; right after the start "
          f"above: {ms(busy)})", ms(median), "< 150 ms", median < 0.15)
    t0 = time.perf_counter()
    command = b.ok("destroy", *names)
    left = await b.on_hosts(set(names))
    while left and time.perf_counter() - t0 < 60:
        left = await b.on_hosts(set(names))
    gone = time.perf_counter() - t0
    b.row("3 hosts: destroy, none left on any host",
          f"`fleetctl destroy` of the {s.small} running units started -> returned "
          "(it waits until every unit is gone) and no host has their unit files "
          "(/run/fleet/units, read after the command returned)",
          f"{secs(command)}; none left at {secs(gone)}" if not left
          else f"{left} still on hosts after 60 s", "< 3 s", not left and gone < 3)


def instances(s: Size) -> list[str]:
    return ([f"conflict@{i}.service" for i in range(1, s.conflict + 1)]
            + [f"follower@{i}.service" for i in range(1, s.conflict + 1)]
            + [f"free@{i}.service" for i in range(1, s.free + 1)])


async def start_many(b: Bench, names: list[str]) -> None:
    """Part 2: every instance started at once."""
    for name, xfleet in TEMPLATES.items():
        (b.tmp / name).write_text(SLEEPER.format(name=name) + xfleet)
    b.ok("submit", *TEMPLATES)
    t0 = time.perf_counter()
    command = b.ok("start", "--no-block", *names)
    done = await b.follow.until(lambda: all(n in b.follow.first_active for n in names), 180)
    count = len(names)
    machines = len(await b.follow.registry.list_machines())
    real = {h.machine_id: h.name for h in b.lab.hosts}
    on_real = ", ".join(f"{n} {len(b.follow.reports.get(m, set()))}" for m, n in real.items())
    b.notes.append(f"When the start was over: {machines} machines registered; units "
                   f"reported by the real hosts: {on_real}.")
    b.row("start --no-block, all instances: command", f"`fleetctl start --no-block` of "
          f"{count} instances started -> returned", f"{secs(command)} "
          f"({count / command:.0f} units/s)", "< 10 s", command < 10)
    end = (f"{secs(done - t0)} ({count / (done - t0):.0f} units/s)" if done else
           f"{sum(n in b.follow.first_active for n in names)} of {count} after 180 s")
    b.row("start --no-block, all instances: all active", f"`fleetctl start --no-block` of "
          f"{count} instances started -> the last one reported active on its machine "
          "(states/ seen by a watcher)", end, "< 10 s (>= 1,000 units/s)",
          done is not None and done - t0 < 10)


async def idle(b: Bench, machines: int) -> None:
    """Part 3: nothing changes; what does it cost?"""
    s = b.size
    _, ip = await leader_host(b)
    pid = fleetd_pid(ip)
    if pid is None:
        raise RuntimeError(f"no fleetd process with FLEET_PUBLIC_IP={ip}")
    workers = [w.pid for w in b.lab.hollow_status() if w.pid is not None]
    await asyncio.sleep(2 if s.name == QUICK.name else 5)  # the last reports settle
    before, cpu0, wcpu0 = etcd_requests(b.lab), cpu_seconds([pid]), cpu_seconds(workers)
    t0 = time.perf_counter()
    await asyncio.sleep(s.idle)
    after, cpu1, wcpu1 = etcd_requests(b.lab), cpu_seconds([pid]), cpu_seconds(workers)
    window = time.perf_counter() - t0
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}
    per = sum(delta.values()) / machines * 60 / window
    keep = delta.get("LeaseKeepAlive", 0.0) / machines * 60 / window
    by = ", ".join(f"{k} {v:.0f}" for k, v in sorted(delta.items(), key=lambda kv: -kv[1]))
    b.row("idle etcd requests per machine per minute", f"{window:.0f} s with every unit "
          f"running, nothing changing; {machines} machines; unary calls + messages "
          "received on streams, all etcd members (`grpc_server_msg_received_total`)",
          f"{per:.1f} (of which LeaseKeepAlive {keep:.1f}; in all: {by or 'none'})", "<= 6",
          per <= 6)
    b.notes.append(
        f"Idle requests: fleetd keeps its lease alive every agent_ttl/3, i.e. "
        f"{180 / s.ttl:.0f} keepalives a minute at this lab's agent_ttl {s.ttl} s "
        "(6 a minute at fleetd's default agent_ttl 30 s); the rest is what the agents "
        "and the engine ask while nothing changes.")
    if grants := delta.get("LeaseGrant", 0.0):
        b.notes.append(f"Not steady: {grants:.0f} leases granted during the idle window "
                       "(machines whose lease had expired registering again).")
    cpu = (cpu1 - cpu0) / window * 100
    b.row("idle engine CPU (leader fleetd)", f"CPU time (user + system, all threads) of "
          f"the leader's fleetd process over the {window:.0f} s idle window (it also runs "
          "that host's agent)", f"{cpu:.1f} % of a core (the {machines - 3} hollow machines: "
          f"{(wcpu1 - wcpu0) / window * 100:.1f} % in all)", "< 5 %", cpu < 5)
    main = rss_mib(pid)
    worker = sum(rss_mib(c) for c in children(pid))
    b.row("leader fleetd RSS", "VmRSS of the leader's fleetd at the end of the idle window",
          f"{main:.0f} MiB (+ {worker:.0f} MiB its systemd worker process)", "< 150 MiB",
          main < 150)


async def lists(b: Bench, machines: int) -> None:
    """Part 4: the big listings, cold."""
    s = b.size
    median, rows = b.cold("list-units")
    b.row("list-units, all rows", f"`fleetctl list-units` started -> returned, {rows} rows, "
          f"cold process, median of {s.runs}", secs(median), "< 1 s", median < 1)
    median, rows = b.cold("list-machines")
    b.row("list-machines, all machines", f"`fleetctl list-machines` started -> returned, "
          f"{rows} rows ({machines} machines), cold process, median of {s.runs}",
          secs(median), "< 0.5 s", median < 0.5)


async def run(b: Bench) -> None:
    s = b.size
    task = asyncio.create_task(b.follow.run())

    async def part(name: str, step: Coroutine[Any, Any, None]) -> None:
        started = time.perf_counter()
        try:
            await step
        except Exception as exc:  # one part failing must not lose the others
            traceback.print_exc()
            b.notes.append(f"Part {name} failed: {type(exc).__name__}: {exc}")
        print(f"-- {name}: {time.perf_counter() - started:.0f} s", flush=True)

    try:
        while await b.follow.registry.get_leader() is None:
            await asyncio.sleep(0.2)
        await part("3 hosts", three_hosts(b))
        t0 = time.perf_counter()
        await asyncio.to_thread(b.lab.hollow_up, s.hollow, 2, START_DELAY)
        machines = len(await b.follow.registry.list_machines())
        b.notes.append(f"{s.hollow} hollow machines in 2 processes registered in "
                       f"{secs(time.perf_counter() - t0)} (`Lab.hollow_up`); "
                       f"{machines} machines in all.")
        await part("start", start_many(b, instances(s)))
        await part("idle", idle(b, machines))
        await part("lists", lists(b, machines))
        await part("crash", crash(b))
        await part("leader", leader_kill(b))
    finally:
        task.cancel()
        await b.follow.registry.close()


def render(b: Bench) -> str:
    s = b.size
    missing = [m for m in MEASURES if m not in b.rows]
    lines = [
        f"Lab: 3 etcd members, 3 real hosts (real fleetd, real systemd) + {s.hollow} hollow "
        f"machines in 2 processes (real agent code, in-memory systemd, activating -> "
        f"active after {START_DELAY:g} s); fleetd agent_ttl {s.ttl} s for the whole lab "
        f"(hollow machines too). Units: {s.conflict} conflict@ (`Conflicts=conflict@*`), "
        f"{s.conflict} follower@ (`MachineOf=conflict@%i`), {s.free} free@, all "
        "`sleep infinity`. fleetctl runs on this machine against the first host's API "
        "(`fleetlab env`), each run a new process. The 3-host rows were measured on the "
        "same lab before the hollow machines joined.",
        "",
        "| measure | from -> to | result | aim |",
        "|---|---|---|---|",
        *(b.rows[m].render() for m in MEASURES if m in b.rows),
        "",
        *(f"- {n}" for n in b.notes),
    ]
    if missing:
        lines.append(f"- Not measured (a part failed): {'; '.join(missing)}.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 hollow machines, 200 units")
    parser.add_argument("--doc", type=Path, default=None,
                        help="write the section to this file (default docs/benchmarks.md)")
    parser.add_argument("--note", default="", help="a sentence added to the section")
    parser.add_argument("--ttl", type=int, default=0,
                        help=f"fleetd's agent_ttl for the lab (default: full {FULL.ttl} s, "
                             f"quick {QUICK.ttl} s)")
    parser.add_argument("--fleet-env", action="append", default=[], metavar="KEY=VALUE",
                        help="another fleetd setting for the whole lab "
                             "(FLEET_ETCD_REQUEST_TIMEOUT=5); said in the section")
    args = parser.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.fleet_env if "=" in kv)
    if len(extra) != len(args.fleet_env):
        parser.error("--fleet-env takes KEY=VALUE")
    size = QUICK if args.quick else FULL
    if args.ttl:
        size = replace(size, ttl=args.ttl)
    lab = Lab(name=size.name, subnet=size.subnet)
    if lab.is_up():
        lab.down()
    started = time.perf_counter()
    load_before, others_before = os.getloadavg()[0], other_labs(size.name)
    try:
        lab.up(hosts=3, etcd_members=3,
               fleet_env={"FLEET_AGENT_TTL": str(size.ttl), **extra})
        with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
            registry = EtcdRegistry(",".join(lab.etcd_endpoints), "/fleetpy/")
            bench = Bench(lab, size, Follower(registry), Path(tmp))
            asyncio.run(run(bench))
    finally:
        try:
            lab.down()
        except LabError as exc:
            print(f"lab down: {exc}", file=sys.stderr)
    if extra:
        bench.notes.append("fleetd settings of the lab besides agent_ttl: "
                           + ", ".join(f"{k}={v}" for k, v in extra.items()) + ".")
    if args.note:
        bench.notes.append(args.note)
    others = sorted(set(others_before) | set(other_labs(size.name)))
    bench.notes.append(
        f"Load average (1 min) {load_before:.1f} when the bench started, "
        f"{os.getloadavg()[0]:.1f} when it ended; other labs up on this machine meanwhile: "
        f"{', '.join(others) or 'none'} (their load shares the 2 cores).")
    bench.notes.append(f"The whole bench took {time.perf_counter() - started:.0f} s.")
    body = render(bench)
    print(body)
    command = " ".join(["python -m bench scale", *(["--quick"] if args.quick else []),
                        *([f"--ttl {args.ttl}"] if args.ttl else []),
                        *(f"--fleet-env {kv}" for kv in args.fleet_env)])
    write_section("scale", command, body, doc=args.doc)
    return 0 if len(bench.rows) == len(MEASURES) else 1


if __name__ == "__main__":
    sys.exit(main())

