"""How long `fleetlab up` and `down` take, and what each host costs in memory.

Run as root: ``python -m bench.lab_bench [--runs N]``. Uses its own lab
(``fllabbench``, 172.17.13.0/24) and writes the section "fleetlab" of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import write_section
from fleetpy.lab import Lab, LabError, cgroups, hosts

NAME, SUBNET = "fllabbench", "172.17.13.0/24"
SETTLE = 3.0  # seconds after up before memory is read (fleetd finishing its start)


def rss_bytes(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@dataclass
class Result:
    hosts: int
    fleetd: bool
    up: list[float] = field(default_factory=list)
    etcd_healthy: list[float] = field(default_factory=list)  # since up began
    last_boot: list[float] = field(default_factory=list)  # since up began
    down: list[float] = field(default_factory=list)
    mem: list[int] = field(default_factory=list)  # per host
    rss: list[int] = field(default_factory=list)  # per host
    procs: list[int] = field(default_factory=list)  # per host
    etcd_rss: list[float] = field(default_factory=list)  # per member


class Phases(logging.Handler):
    """Picks the times that Lab.up logs: etcd healthy, each host booted."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.etcd = 0.0
        self.boots: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if found := re.search(r"after ([0-9.]+)s", msg):
            if msg.startswith("etcd cluster healthy"):
                self.etcd = float(found[1])
            elif msg.startswith("host "):
                self.boots.append(float(found[1]))


@contextlib.contextmanager
def without_fleetd() -> Iterator[None]:
    """Boot bare hosts (systemd + journald), as before fleetd existed."""
    real = hosts.fleetd_unit
    hosts.fleetd_unit = lambda: None
    try:
        yield
    finally:
        hosts.fleetd_unit = real


def measure(lab: Lab, n_hosts: int, runs: int, fleetd: bool) -> Result:
    if not fleetd:
        with without_fleetd():
            return measure(lab, n_hosts, runs, True)
    r = Result(n_hosts, hosts.fleetd_unit() is not None)
    log = logging.getLogger("fleetpy.lab")
    log.setLevel(logging.INFO)
    for _ in range(runs):
        phases = Phases()
        log.addHandler(phases)
        t = time.monotonic()
        lab.up(hosts=n_hosts, etcd_members=3)
        r.up.append(time.monotonic() - t)
        log.removeHandler(phases)
        r.etcd_healthy.append(phases.etcd)
        r.last_boot.append(max(phases.boots))
        time.sleep(SETTLE)
        for h in lab.hosts:
            group = f"{lab.cfg.cgroup}/{h.name}"
            pids = cgroups.pids(group)
            r.mem.append(cgroups.memory_bytes(group) or 0)
            r.rss.append(rss_bytes(pids))
            r.procs.append(len(pids))
        etcd_pids = cgroups.pids(f"{lab.cfg.cgroup}/etcd")
        r.etcd_rss.append(rss_bytes(etcd_pids) / max(len(etcd_pids), 1))
        t = time.monotonic()
        lab.down()
        r.down.append(time.monotonic() - t)
    return r


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})"


def mib(xs: list[int] | list[float]) -> str:
    return f"{statistics.mean(xs) / 2**20:.1f} MiB"


def render(results: list[Result], runs: int) -> str:
    lines = [
        f"3 etcd members; {runs} runs per size. Times are wall clock of `Lab.up()` / "
        "`Lab.down()` (median, min-max); `up` returns when every host's systemd has "
        "finished booting (`is-system-running --wait`: with fleetd, fleetd is ready) "
        "and etcd is healthy.",
        "",
        "| hosts | fleetd | up | of which: etcd healthy | last host booted | down |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.hosts} | {'yes' if r.fleetd else 'no'} | {spread(r.up)} "
        f"| {spread(r.etcd_healthy)} | {spread(r.last_boot)} | {spread(r.down)} |"
        for r in results
    ]
    lines += [
        "",
        "Where the time goes: hosts start in parallel (one thread each) while etcd "
        "elects a leader. etcd members used to be started together, and each then "
        "waited out a 1 s bootstrap check per peer (peer ports open, not yet "
        "served): 2-3 s before the cluster was healthy. They now start in turn, "
        "each once the previous one serves its peers. The rest of `up` is host "
        "boot; with fleetd it is fleetd's start (Python imports, Type=notify "
        "readiness) on every host, which on 2 cores is CPU bound at 10 hosts. "
        "`down` kills each host's PID 1 at once (its whole pid namespace goes), "
        "SIGKILLs etcd and removes links, cgroups and files.",
        "",
        f"Memory per host {SETTLE:.0f} s after up (mean over hosts and runs): the "
        "host's cgroup memory (v1 `memory.usage_in_bytes`: RSS + page cache + "
        "kernel memory, what a host really costs) and the sum of VmRSS of its "
        "processes (shared pages counted in each).",
        "",
        "| hosts | fleetd | processes/host | cgroup memory/host | RSS sum/host | RSS/etcd member |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.hosts} | {'yes' if r.fleetd else 'no'} | {statistics.mean(r.procs):.1f} "
        f"| {mib(r.mem)} | {mib(r.rss)} "
        f"| {mib(r.etcd_rss)} |"
        for r in results
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per lab size")
    args = parser.parse_args()
    lab = Lab(name=NAME, subnet=SUBNET)
    with contextlib.suppress(LabError):
        lab.down()
    results = [measure(lab, n, args.runs, fleetd) for fleetd in (False, True) for n in (3, 10)]
    body = render(results, args.runs)
    print(body)
    write_section("fleetlab", f"python -m bench.lab_bench --runs {args.runs}", body)


if __name__ == "__main__":
    main()
