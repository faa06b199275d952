"""Run every benchmark: ``python -m bench`` (as root; boots its own labs).

Each benchmark writes its own section of docs/benchmarks.md. Name some to run
only those: ``python -m bench schedule cluster``. Options after the names go
to each of them: ``python -m bench scale --quick --doc /tmp/b.md``.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHES = {
    "schedule": ["-m", "bench.schedule_bench"],
    "registry": ["-m", "bench.registry_bench"],
    "systemd": ["bench/systemd_bench.py", "--rounds", "50"],
    "fleetlab": ["-m", "bench.lab_bench", "--runs", "3"],
    "cluster": ["-m", "bench.cluster_bench"],
    "reschedule": ["-m", "bench.reschedule_bench"],
    "scale": ["-m", "bench.scale_bench"],
    "ctl": ["-m", "bench.ctl_bench"],
    "faults": ["-m", "bench.faults_bench"],
}


def main() -> int:
    args = sys.argv[1:]
    first_option = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    wanted, options = args[:first_option] or list(BENCHES), args[first_option:]
    unknown = [w for w in wanted if w not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    failed = []
    for name in wanted:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, *BENCHES[name], *options], check=False).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
