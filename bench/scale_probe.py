"""Figures for docs/scaling.md: the engine planner at 10,000-100,000 units, record sizes.

Not one of ``python -m bench``'s benchmarks (it writes nothing); run by hand:

    python -m bench.scale_probe plan --machines 1000 --units 10000 [--runs 3]
    python -m bench.scale_probe sizes
    python -m bench.scale_probe lists --units 100000

``plan``: pinned to one CPU, times ``fleetpy.engine.plan.plan_engine`` on the
workload of bench.schedule_bench (scaled: 10,000 units = scale 100): a cold
pass (empty schedule: parse + place every unit), a pass with nothing to do
(specs cached, every unit placed), and a pass after one new unit (what the
event-driven engine runs when one unit is added), median of ``--runs``, in
CPU time of the process (so that other work on the machine does not count);
and the process's peak RSS. ``sizes``: bytes per record as fleetpy stores them in
etcd (key + JSON value, default prefix) and as the gRPC API sends them.
``lists``: the CPU time of the list-units path for N unit states, without
etcd: decode N stored states (what the registry does with a range
response), build and serialise the ListUnitStates response (the API
server), parse it (fleetctl); bytes of the range and of the message.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable

from bench.report import machine_line
from bench.schedule_bench import BODY, make_machines, unit_texts
from fleetpy.api import convert
from fleetpy.engine.plan import plan_engine
from fleetpy.model.types import ScheduledUnit, TargetState, UnitState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry import codec
from fleetpy.registry.base import DEFAULT_PREFIX, UnitRecord


def _cpu_ms(fn: Callable[[], object]) -> float:
    """CPU time of one call (process time: other processes on the cores do not count)."""
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e3


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    return statistics.median(_cpu_ms(fn) for _ in range(runs))


def plan(n_machines: int, n_units: int, runs: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    machines = make_machines(n_machines)
    texts = unit_texts(n_units // 100)
    records = [UnitRecord(unit=make_unit_file(n, t), desired=TargetState.LAUNCHED)
               for n, t in texts]
    out = []
    cold = _cpu_ms(lambda: out.append(plan_engine(records, machines, [])))
    first = out[0]
    placed = len({e.name for e in first.puts})
    schedule, specs = first.puts, first.specs
    idle = _median_ms(lambda: plan_engine(records, machines, schedule, specs=specs), runs)
    extra = [*records, UnitRecord(unit=make_unit_file("new.service", BODY),
                                  desired=TargetState.LAUNCHED)]
    one = _median_ms(lambda: plan_engine(extra, machines, schedule, specs=specs), runs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n_machines:,} machines, {len(records):,} units ({placed:,} placed): "
          f"cold pass {cold:,.0f} ms, nothing to do {idle:,.0f} ms, one new unit "
          f"{one:,.0f} ms (median of {runs}); peak RSS {rss:,.0f} MiB")


def sizes() -> None:
    name, mid = "web17@3.service", "0123456789abcdef0123456789abcdef"
    text = BODY + "[X-Fleet]\nConflicts=%p@*.service\n"
    unit = make_unit_file(name, text)
    sched = ScheduledUnit(name=name, machine_id=mid, target=TargetState.LAUNCHED,
                          hash=unit.hash, contents=unit.contents)
    state = UnitState(name=name, machine_id=mid, load_state="loaded", active_state="active",
                      sub_state="running", hash=unit.hash, fleet="launched", error="")
    machine = make_machines(1)[0]

    def kv(key: str, value: bytes) -> int:
        return len((DEFAULT_PREFIX + key).encode()) + len(value)

    rows = [
        ("unit (units/<name>)",
         kv(codec.unit_key(name), codec.encode_unit(unit, TargetState.LAUNCHED)),
         len(convert.record_to_pb(UnitRecord(unit=unit, desired=TargetState.LAUNCHED,
                                             revision=123456)).SerializeToString())),
        ("schedule entry", kv(codec.schedule_key(mid, name), codec.encode_scheduled(sched)),
         len(convert.scheduled_to_pb(sched).SerializeToString())),
        ("unit state", kv(codec.state_key(mid, name), codec.encode_state(state)),
         len(convert.state_msg_to_pb(state).SerializeToString())),
        ("machine", kv(codec.machine_key(machine.id), codec.encode_machine(machine)),
         len(convert.machine_to_pb(machine).SerializeToString())),
    ]
    print(f"unit file: {len(text)} bytes of contents")
    for what, stored, wire in rows:
        print(f"{what}: {stored} bytes in etcd (key + value), {wire} bytes as protobuf")


def lists(n_units: int) -> None:
    from fleetpy.api.gen import fleet_pb2 as pb

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    ids = [m.id for m in make_machines(max(1, n_units // 10))]
    stored = []
    for i in range(n_units):
        name, mid = f"web{i // 5}@{i % 5}.service", ids[i % len(ids)]
        state = UnitState(name=name, machine_id=mid, load_state="loaded",
                          active_state="active", sub_state="running", hash="f" * 40,
                          fleet="launched", error="")
        stored.append((codec.state_key(mid, name), codec.encode_state(state)))
    range_bytes = sum(len(DEFAULT_PREFIX) + len(k) + len(v) for k, v in stored)
    start = time.process_time()
    states = [codec.decode_state(k, v) for k, v in stored]
    decode = time.process_time() - start
    start = time.process_time()
    wire = pb.ListUnitStatesResponse(
        states=[convert.state_msg_to_pb(s) for s in states]).SerializeToString()
    encode = time.process_time() - start
    start = time.process_time()
    back = pb.ListUnitStatesResponse.FromString(wire)
    rows = [convert.state_msg_from_pb(s) for s in back.states]
    parse = time.process_time() - start
    assert len(rows) == n_units
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n_units:,} unit states: range {range_bytes / 2**20:.1f} MiB, decode "
          f"{decode * 1e3:,.0f} ms; ListUnitStates message {len(wire) / 2**20:.1f} MiB, "
          f"build + serialise {encode * 1e3:,.0f} ms, parse + convert {parse * 1e3:,.0f} ms; "
          f"peak RSS {rss:,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--machines", type=int, default=1000)
    p.add_argument("--units", type=int, default=10000)
    p.add_argument("--runs", type=int, default=3)
    sub.add_parser("sizes")
    p = sub.add_parser("lists")
    p.add_argument("--units", type=int, default=10000)
    args = parser.parse_args()
    print(machine_line())
    if args.what == "plan":
        plan(args.machines, args.units, args.runs)
    elif args.what == "lists":
        lists(args.units)
    else:
        sizes()


if __name__ == "__main__":
    main()
