"""Hollow machines on a lab of their own: the real agent code on an in-memory systemd.

Lab ``flhollow`` (172.17.45.0/24): 1 real host, agent_ttl 8 s, plus 20 hollow
machines in 2 worker processes (``fleetlab hollow up``), 200 units. The scale
figures come from ``python -m bench scale``; this module keeps the hollow code
working: registration, units through activating to active, crashes that move
units (never onto two machines at once), and clean stops.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from fleetpy.lab.procs import running
from tests.lab.conftest import fresh_lab, own_lab, session_lock
from tests.lab.fleet_helpers import SLEEPER, eventually, fleetctl, ok, table

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

NAME, SUBNET = "flhollow", "172.17.45.0/24"
TTL = 8  # s: long enough that "left at once" (hollow down, 1.7 s measured) beats expiry
HOLLOW = 20
FLEETLAB = str(Path(sys.executable).with_name("fleetlab"))
UNITS = 200


def fleetlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLEETLAB, "--name", NAME, *args], capture_output=True, text=True,
                          timeout=120, check=False, env=os.environ)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with own_lab(NAME, SUBNET, hosts=1, etcd_members=3,
                 fleet_env={"FLEET_AGENT_TTL": str(TTL)}) as the_lab:
        yield the_lab


def machines(lab: Lab) -> dict[str, str]:
    """machine id -> metadata, from fleetctl list-machines."""
    out = ok(fleetctl(lab, "list-machines", "--no-legend", "--full"))
    return {row[0]: row[2] for row in table(out)}


def units_by_machine(lab: Lab) -> list[tuple[str, str, str]]:
    """(unit, machine id, active) for every row of list-units (every machine's report)."""
    out = ok(fleetctl(lab, "list-units", "--no-legend", "--full",
                      "--fields=unit,machine,active"))
    return [(u, m.split("/")[0], a) for u, m, a in table(out)]


def worker_pids() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd[1:3] == [b"-m", b"fleetpy.hollow.worker"] and NAME.encode() in cmd:
                found.add(int(entry.name))
    return running(found)


def test_hollow_machines_run_units_and_crash_like_machines(lab: Lab, tmp_path: Path) -> None:
    real = set(machines(lab))
    up = fleetlab("hollow", "up", "--machines", str(HOLLOW), "--processes", "2",
                  "--start-delay", "0.2", "--metadata", "rack=r1")
    assert up.returncode == 0, up.stderr
    seen = machines(lab)
    hollow = {m: meta for m, meta in seen.items() if m not in real}
    assert len(hollow) == HOLLOW and len(real) == 1
    assert all(meta.startswith("hollow=true,hostname=hollow-") and meta.endswith(",rack=r1")
               for meta in hollow.values()), hollow
    assert len(worker_pids()) == 2

    paths = []
    for i in range(UNITS):
        path = tmp_path / f"h{i:03d}.service"
        path.write_text(SLEEPER.format(name=f"h{i:03d}"))
        paths.append(str(path))
    ok(fleetctl(lab, "start", "--no-block", *paths, timeout=120))

    def all_active() -> list[tuple[str, str, str]] | None:
        rows = units_by_machine(lab)
        done = len(rows) == UNITS and all(a == "active" for _, _, a in rows)
        return rows if done else None

    rows = eventually(all_active, timeout=60, what=f"{UNITS} units active")
    on_hollow = sum(1 for _, m, _ in rows if m in hollow)
    assert on_hollow >= UNITS - 20  # least loaded first: the real host gets its share only
    status = fleetlab("hollow", "status")
    assert status.returncode == 0
    counts = [list(map(int, r[2:])) for r in table(status.stdout)[1:]]
    assert sum(c[0] for c in counts) == HOLLOW and sum(c[1] for c in counts) == HOLLOW
    assert sum(c[4] for c in counts) == on_hollow  # hollow systemd's own count of active

    killed = fleetlab("hollow", "kill", "4")
    assert killed.returncode == 0, killed.stderr
    dead = set(killed.stdout.split())
    assert len(dead) == 4 and dead <= set(hollow)
    moved = {u for u, m, _ in rows if m in dead}
    assert moved, "the killed machines ran no unit"

    def moved_away() -> bool:
        now = units_by_machine(lab)
        names = [u for u, _, _ in now]
        assert len(names) == len(set(names)), f"a unit reported on two machines: {now}"
        return (len(now) == UNITS and all(a == "active" for _, _, a in now)
                and not any(m in dead for _, m, _ in now))

    eventually(moved_away, timeout=TTL + 20, what="units of the killed machines elsewhere",
               every=0.1)
    assert set(machines(lab)) == set(seen) - dead

    started = time.monotonic()
    down = fleetlab("hollow", "down")
    assert down.returncode == 0, down.stderr
    assert set(machines(lab)) == real  # left at once: leases revoked, not expired...
    took = time.monotonic() - started
    # ...which only holds if expiry could not have done it meanwhile: a lease lives
    # at least 2/3 TTL after its machine's last refresh (refreshed every TTL/3).
    assert took < TTL * 2 / 3, f"hollow down took {took:.1f}s: expiry could explain it"
    assert worker_pids() == set()
    ok(fleetctl(lab, "destroy", *[Path(p).name for p in paths], timeout=120))


def test_lab_down_stops_hollow_workers(root: None) -> None:
    with session_lock("flhollow2"):
        lab = fresh_lab("flhollow2", "172.17.47.0/24")
        lab.up(hosts=1, etcd_members=1)
        try:
            lab.hollow_up(5, processes=1)
            assert sum(w.registered for w in lab.hollow_status()) == 5
            # each hollow machine's state dir (its unit record) is on tmpfs, like /run/fleet
            assert len(list(Path("/dev/shm/fleetlab-flhollow2-hollow").iterdir())) == 5
            pids = {w.pid for w in lab.hollow_status()}
        finally:
            lab.down()
        assert running({p for p in pids if p}) == set()
        assert not Path("/var/lib/fleetlab/flhollow2").exists()
        assert not Path("/dev/shm/fleetlab-flhollow2-hollow").exists()
