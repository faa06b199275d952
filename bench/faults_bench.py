"""The fault bench of issue 11: ``python -m bench faults [--repeat N] [--quick] [--doc [PATH]]``.

Run as root from the repository root. Boots its own lab (full: ``flchaos``,
172.17.49.0/24; ``--quick``: ``flchaosq``, 172.17.51.0/24), 3 etcd members and
3 hosts, fleetd with agent_ttl ``--ttl`` (default 10 s), and always tears it
down. Units (``sleep infinity``) on every host: 7 plain, 2 MachineOf pairs, 1
Global (12), plus 3 ``StopWhenDisconnected=true`` units when this fleetpy
knows that option. The observer (bench/faults_observe.py) samples systemd on
every host throughout; each scenario of bench/faults_scenarios.py is repeated
``--repeat`` times (kill -9: that many times per host) and measured by
bench/faults_analysis.py. ``--quick``: one kill -9 and one short partition
(a graceful restart if the lab cannot partition), about 90 s, for CI.
``--doc``: write the section to docs/reliability.md (or PATH).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.faults_analysis import GAP, Window, analyze, lost_desired, matches
from bench.faults_observe import Observer, Registry, fleetd_errors, poll
from bench.faults_report import (
    DOC,
    Rep,
    UnitSet,
    prepare_doc,
    render,
)
from bench.faults_scenarios import QUICK, QUICK_FALLBACK, SCENARIOS, Ctx, Scenario
from bench.report import write_section
from bench.scale_watch import other_labs
from fleetpy.lab import Lab, LabError
from fleetpy.model import xfleet

FULL_LAB = ("flchaos", "172.17.49.0/24")
QUICK_LAB = ("flchaosq", "172.17.51.0/24")
TTL = 10
SLEEPER = "[Unit]\nDescription=fault bench {name}\n\n[Service]\nExecStart=/bin/sleep infinity\n"
FENCING = "StopWhenDisconnected" in xfleet.OPTIONS


def unit_set(fenced: bool = FENCING) -> UnitSet:
    files: dict[str, str] = {f"plain-{i}.service": "" for i in range(1, 8)}
    for i in (1, 2):
        files[f"lead-{i}.service"] = ""
        files[f"side-{i}.service"] = f"MachineOf=lead-{i}.service"
    files["every.service"] = "Global=true"
    fence = {f"fenced-{i}.service": "StopWhenDisconnected=true" for i in range(1, 4)}
    # fencing's stop budget is 2/3 agent_ttl: a fenced unit stops well within it
    if fenced:
        files.update(fence)
    late = {f"late-{i}.service": "" for i in range(1, 6)}
    return UnitSet(files, late, frozenset({"every.service"}),
                   frozenset(fence) if fenced else frozenset())


def write_files(tmp: Path, files: dict[str, str]) -> list[str]:
    for name, xf in files.items():
        stop = "TimeoutStopSec=5s\n" if "StopWhenDisconnected" in xf else ""
        (tmp / name).write_text(SLEEPER.format(name=name) + stop
                                + (f"\n[X-Fleet]\n{xf}\n" if xf else ""))
    return list(files)


def settle(ctx: Ctx, units: frozenset[str], timeout: float,
           stable: float = 2.0) -> tuple[float, dict[str, frozenset[str]]] | str:
    """Wait until every host (fresh samples) runs exactly what the engine placed on it,
    every launched unit placed, for ``stable`` s: (then, the placement), or why not."""
    since: float | None = None
    before: dict[str, frozenset[str]] | None = None
    hosts = {h.name for h in ctx.lab.hosts if h.pid is not None}
    why = "not asked"
    checks = 0
    for _ in poll(0.3, timeout):
        checks += 1
        try:
            desired, target = ctx.reg.desired(), ctx.reg.placement()
        except Exception as exc:  # etcd not back yet
            since, why = None, f"etcd: {type(exc).__name__}"
            continue
        target = {u: h for u, h in target.items() if u in units}
        now = time.time()
        latest = ctx.obs.latest()
        why = "; ".join(
            [f"{u} not placed" for u, (d, _) in sorted(desired.items())
             if d == "launched" and u in units and u not in target]
            + [f"no sample from {h}" for h in sorted(hosts - set(latest))]
            + [f"{h} silent {now - s.t:.1f} s" for h, s in latest.items() if now - s.t >= GAP]
            + [f"{h}: {u} {'runs' if s.running(u) else 'does not run'}"
               for h, s in sorted(latest.items()) for u in sorted(units)
               if not matches(s, target, [u])])
        if why or target != before:  # out of place, or the engine still placing
            since, before = (None if why else now), target
            continue
        since = since or now
        if now - since >= stable:
            return now, target
    if since is not None:
        why = why or f"in place only for the last {time.time() - since:.1f} s"
    return f"{why or 'nothing checked'} (after {checks} checks)"


def placement_or_none(ctx: Ctx) -> dict[str, frozenset[str]]:
    try:
        return ctx.reg.placement()
    except Exception:  # etcd still away: judged against no placement at all
        return {}


def run_rep(ctx: Ctx, units: UnitSet, sc: Scenario, rep: int) -> Rep:
    watched = frozenset(units.watched)
    # the late units of a previous repetition go first (not measured)
    if sc.group == 5 and ctx.reg.desired().keys() & set(units.late):
        ctx.fleetctl("destroy", *units.late)
    if isinstance(ready := settle(ctx, watched, 120), str):
        raise RuntimeError(f"the cluster did not settle before the fault (120 s): {ready}")
    before = {u: d for u, d in ctx.reg.desired().items() if u in watched}
    ctx.obs.forget(time.time() - 30)
    start = time.time()
    out = sc.act(ctx, rep)
    wait = 3 * ctx.ttl + 60
    settled = settle(ctx, watched, wait)
    if isinstance(settled, str):
        ctx.notes.append(f"{sc.key} repetition {rep + 1}: not settled {wait} s after the "
                         f"fault: {settled[:300]}")
        end, target = time.time(), placement_or_none(ctx)
    else:
        end, target = settled
    after = {u: d for u, d in ctx.reg.desired().items() if u in watched}
    window = Window(start, out.fault_end, end, target, units.global_units, out.may_move_from,
                    watched)
    figures = analyze(ctx.obs.samples(start - 10), window)
    return Rep(sc.key, rep, start, out.fault_end, end, figures,
               lost_desired(before, after, out.added), fleetd_errors(ctx.lab, start),
               wait if isinstance(settled, str) else None)


def repetitions(sc: Scenario, n: int, hosts: int) -> int:
    return n * hosts if sc.per_host else n


def chosen(args: argparse.Namespace, lab: Lab) -> tuple[list[Scenario], list[str]]:
    skipped = [f"{sc.key} (scenario {sc.group}): this lab has no "
               f"{', '.join(f'Lab.{m}' for m in sc.missing(lab))}"
               for sc in SCENARIOS if sc.missing(lab)]
    able = [sc for sc in SCENARIOS if not sc.missing(lab)]
    if args.only:
        unknown = set(args.only) - {sc.key for sc in SCENARIOS}
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}; known: "
                             + ", ".join(sc.key for sc in SCENARIOS))
        able = [sc for sc in able if sc.key in args.only]
    elif args.quick:
        keys = [k for k in QUICK if any(sc.key == k for sc in able)]
        if len(keys) < len(QUICK):
            keys.append(QUICK_FALLBACK)
        able = [sc for sc in able if sc.key in keys]
    return able, skipped


def bench(args: argparse.Namespace, lab: Lab, tmp: Path, units: UnitSet,
          notes: list[str]) -> list[Rep]:
    lab.up(hosts=3, etcd_members=3, fleet_env={"FLEET_AGENT_TTL": str(args.ttl)})
    scenarios, skipped = chosen(args, lab)
    notes += [f"Not run: {s}." for s in skipped]
    write_files(tmp, units.files | units.late)
    obs = Observer(lab, units.watched)
    obs.start()
    ctx = Ctx(lab, obs, Registry(lab), args.ttl, tmp, tuple(units.late))
    reps: list[Rep] = []
    try:
        started = ctx.fleetctl("start", *units.files, timeout=300)
        if started.returncode != 0:
            raise RuntimeError(f"fleetctl start failed: {started.stderr[-500:]}")
        n = 1 if args.quick else args.repeat
        for sc in scenarios:
            count = 1 if args.quick else repetitions(sc, n, len(lab.hosts))
            for rep in range(count):
                t0 = time.monotonic()
                try:
                    reps.append(run_rep(ctx, units, sc, rep))
                except Exception as exc:  # one failing repetition must not lose the rest
                    traceback.print_exc()
                    notes.append(f"{sc.key} repetition {rep + 1} failed: "
                                 f"{type(exc).__name__}: {exc}")
                print(f"-- {sc.key} {rep + 1}/{count}: {time.monotonic() - t0:.0f} s",
                      flush=True)
    finally:
        obs.stop()
        notes += ctx.notes
    return reps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each scenario")
    parser.add_argument("--quick", action="store_true", help="a small subset, for CI")
    parser.add_argument("--doc", nargs="?", const=str(DOC), default=None, metavar="PATH",
                        help="write the section to PATH (default docs/reliability.md)")
    parser.add_argument("--ttl", type=int, default=TTL, help="fleetd's agent_ttl in the lab")
    parser.add_argument("--only", nargs="+", default=[], metavar="SCENARIO",
                        help="run only these scenarios")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.ttl < 2:
        parser.error("--repeat must be >= 1 and --ttl >= 2")
    if os.geteuid() != 0:
        parser.error("run as root: the bench boots its own lab")
    name, subnet = QUICK_LAB if args.quick else FULL_LAB
    lab = Lab(name=name, subnet=subnet)
    if lab.is_up():
        lab.down()
    units = unit_set()
    notes: list[str] = []
    load0, others0, t0 = os.getloadavg()[0], other_labs(name), time.monotonic()
    reps: list[Rep] = []
    try:
        with tempfile.TemporaryDirectory(prefix="fault-bench-") as tmp:
            reps = bench(args, lab, Path(tmp), units, notes)
    finally:
        try:
            lab.down()
        except LabError as exc:
            print(f"lab down: {exc}", file=sys.stderr)
    others = sorted(set(others0) | set(other_labs(name)))
    notes.append(f"Load average (1 min) {load0:.1f} at the start, {os.getloadavg()[0]:.1f} "
                 f"at the end; other labs up meanwhile: {', '.join(others) or 'none'}; the "
                 f"whole bench took {time.monotonic() - t0:.0f} s.")
    body = render(reps, units, args.ttl, args.quick, notes)
    print(body)
    if args.doc:
        command = " ".join(["python -m bench faults", *(["--quick"] if args.quick else []),
                            *([f"--repeat {args.repeat}"] if not args.quick else []),
                            *([f"--ttl {args.ttl}"] if args.ttl != TTL else []),
                            *(["--only", *args.only] if args.only else [])])
        doc = Path(args.doc)
        prepare_doc(doc)
        write_section("faults", command, body, doc=doc)
    return 0 if reps and not any(n.endswith("failed") or " failed: " in n for n in notes) else 1


if __name__ == "__main__":
    sys.exit(main())
