"""Placement throughput of the pure scheduler (and the engine pass built on it).

Run: ``python -m bench.schedule_bench`` (``--quick`` for a smoke run that
writes nothing). The process is pinned to one CPU. Workload: 1,000 machines
(4 regions, half with ssd), 10,000 units:

- 4,000 ``web<g>@<i>.service``, 800 groups of 5, ``Conflicts=%p@*.service``;
- 4,000 ``side<g>@<i>.service``, each ``MachineOf=web<g>@<i>.service`` and
  ``Conflicts=%p@*.service``;
- 1,000 ``db<g>-<i>.service``, 100 groups of 10, ``MachineMetadata=disk=ssd``
  and ``Conflicts=db<g>-*.service``;
- 1,000 ``job<k>.service`` without requirements.

Requirements are parsed from unit text before timing; a placement is one
``decide`` plus one ``Cluster.place``. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import time
from collections.abc import Callable

from bench.report import write_section
from fleetpy.engine.plan import plan_engine
from fleetpy.model.types import Machine, TargetState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.model.xfleet import xfleet_of
from fleetpy.registry.base import UnitRecord
from fleetpy.schedule import Cluster, UnitSpec, decide

COMMAND = "python -m bench.schedule_bench"
BODY = "[Service]\nExecStart=/usr/bin/sleep infinity\n"


def make_machines(n: int) -> list[Machine]:
    return [
        Machine(
            id=hashlib.sha1(f"machine-{i}".encode()).hexdigest()[:32],
            public_ip=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            metadata={"region": f"r{i % 4}", "disk": "ssd" if i % 2 else "hdd"},
        )
        for i in range(n)
    ]


def unit_texts(scale: int) -> list[tuple[str, str]]:
    """(name, contents) in placement order: each MachineOf follower after its target."""
    groups: list[list[tuple[str, str]]] = []
    for g in range(8 * scale):
        group = []
        for i in range(5):
            group.append((f"web{g}@{i}.service", BODY + "[X-Fleet]\nConflicts=%p@*.service\n"))
            side = f"[X-Fleet]\nMachineOf=web{g}@{i}.service\nConflicts=%p@*.service\n"
            group.append((f"side{g}@{i}.service", BODY + side))
        groups.append(group)
    for g in range(scale):
        db = f"[X-Fleet]\nMachineMetadata=disk=ssd\nConflicts=db{g}-*.service\n"
        groups.append([(f"db{g}-{i}.service", BODY + db) for i in range(10)])
    groups.extend([(f"job{k}.service", BODY)] for k in range(10 * scale))
    random.Random(42).shuffle(groups)
    return [unit for group in groups for unit in group]


def place_all(machines: list[Machine], specs: list[UnitSpec]) -> tuple[float, int]:
    cluster = Cluster(machines)
    waits = 0
    start = time.perf_counter()
    for spec in specs:
        decision = decide(cluster, spec)
        if decision.machine_id is None:
            waits += 1
        else:
            cluster.place(spec, decision.machine_id)
    return time.perf_counter() - start, waits


def worst_case(machines: list[Machine], count: int) -> tuple[float, int]:
    """The least-loaded half of the machines all excluded by Conflicts."""
    half = len(machines) // 2
    cluster = Cluster(machines)
    for i, m in enumerate(machines):
        if i < half:
            cluster.place(UnitSpec(f"x@{i}.service"), m.id)
        else:
            for k in range(5):
                cluster.place(UnitSpec(f"busy{i}-{k}.service"), m.id)
    specs = [
        UnitSpec(f"y@{j}.service", xfleet_of(f"y@{j}.service", BODY + "[X-Fleet]\nConflicts=x@*\n"))
        for j in range(count)
    ]
    waits = 0
    start = time.perf_counter()
    for spec in specs:
        decision = decide(cluster, spec)
        if decision.machine_id is None:
            waits += 1
        else:
            cluster.place(spec, decision.machine_id)
    return time.perf_counter() - start, waits


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run, nothing written")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    scale, n_machines, runs = (10, 100, 2) if args.quick else (100, 1000, args.runs)

    machines = make_machines(n_machines)
    texts = unit_texts(scale)
    specs = [UnitSpec(name, xfleet_of(name, text)) for name, text in texts]
    results = [place_all(machines, specs) for _ in range(runs)]
    times = [t for t, _ in results]
    waits = results[0][1]
    rate_median = len(specs) / statistics.median(times)
    rate_best = len(specs) / min(times)

    worst_times = [worst_case(machines, len(machines) // 2) for _ in range(runs)]
    worst_rate = (len(machines) // 2) / statistics.median(t for t, _ in worst_times)

    records = [
        UnitRecord(unit=make_unit_file(name, text), desired=TargetState.LAUNCHED)
        for name, text in texts
    ]
    first = plan_engine(records, machines, [])
    cold = timed(lambda: plan_engine(records, machines, []), max(1, runs // 2))
    warm_specs = first.specs
    schedule = first.puts
    steady = timed(lambda: plan_engine(records, machines, schedule, specs=warm_specs), runs)

    body = "\n".join(
        [
            f"{len(machines):,} machines, {len(specs):,} units ({40 * scale:,} with Conflicts, "
            f"{40 * scale:,} with MachineOf + Conflicts, {10 * scale:,} with MachineMetadata + "
            f"Conflicts, {10 * scale:,} free); one CPU, {runs} runs.",
            "",
            "| measure | result |",
            "|---|---|",
            f"| placements/s, median (decide + place) | {rate_median:,.0f} |",
            f"| placements/s, best | {rate_best:,.0f} |",
            f"| time to place all {len(specs):,}, median | "
            f"{statistics.median(times) * 1e3:,.0f} ms |",
            f"| units left waiting | {waits} |",
            f"| worst case: the {len(machines) // 2:,} least-loaded machines excluded by "
            f"Conflicts, placements/s | "
            f"{worst_rate:,.0f} |",
            f"| engine pass from scratch (parse + place {len(records):,} units) | "
            f"{statistics.median(cold) * 1e3:,.0f} ms |",
            f"| engine pass, nothing to do (specs cached) | "
            f"{statistics.median(steady) * 1e3:,.0f} ms |",
            "",
            "Target: >= 2,000 placements/s on one core.",
        ]
    )
    print(body)
    if not args.quick:
        write_section("schedule", COMMAND, body)


if __name__ == "__main__":
    main()
