"""Signal latency of the systemd adapter on a real systemd in a lab host.

    .venv/bin/python bench/systemd_bench.py [--rounds 50] [--lab NAME --subnet CIDR]

Without --lab it brings up a private one-host lab (``sdbench``) and takes it
down afterwards. Runs ``tests/lab/systemd_driver.py bench`` inside the host and
writes the section ``systemd`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from fleetpy.lab import Lab  # noqa: E402

DRIVER = ROOT / "tests" / "lab" / "systemd_driver.py"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"| {label} | {len(ms)} | {statistics.median(ms):.2f} | {pct(ms, 0.99):.2f} "
        f"| {max(ms):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--lab", help="use this running lab instead of a private one")
    parser.add_argument("--subnet", default="172.17.77.0/24")
    args = parser.parse_args()
    lab = Lab(args.lab or "sdbench", subnet=args.subnet)
    own = args.lab is None
    if own:
        lab.up(hosts=1, etcd_members=1)
    try:
        host = lab.hosts[0].name
        done = lab.exec(host, [sys.executable, str(DRIVER), "bench", str(args.rounds)], timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"driver failed:\n{done.stderr}")
        r = json.loads(done.stdout)
    finally:
        if own:
            lab.down()
    body = "\n".join(
        [
            f"{args.rounds} start/stop cycles of one `sleep` service in a lab host, "
            "DbusUnitManager on the private socket (pystemd in the worker process).",
            "",
            "| measure | n | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|---|",
            row("start: ActiveEnterTimestamp -> item on the stream", r["start"]),
            row("stop: StopUnit returned -> inactive/dead item (incl. unit exit)", r["stop"]),
            row("start_unit() call (job queued)", r["start_call"]),
            row("100 units started at once: ActiveEnterTimestamp -> item", r["burst_latency"]),
            "",
            f"The 100-unit burst (100 concurrent start_unit() calls) took "
            f"{r['burst_s'] * 1000:.0f} ms from the first call to the last unit's active item; "
            f"statuses() of those 100 units (one ListUnitsByNames) took "
            f"{r['statuses_100_s'] * 1000:.1f} ms.",
            "",
            "The start row is the signal path itself: systemd's own monotonic timestamp",
            "of the state change to the item reaching the asyncio consumer (worker,",
            "pipe, reader). systemd forgets a stopped unit's timestamps when it",
            "garbage-collects it, hence the stop row's end-to-end measure.",
        ]
    )
    write_section("systemd", f"python bench/systemd_bench.py --rounds {args.rounds}", body)
    print(body)


if __name__ == "__main__":
    main()
