"""[X-Fleet] end to end on a lab of its own: every constraint, global units, metadata,
machines that stop, crash, return and join.

Lab ``flsched`` (172.17.40.0/24): 3 hosts with metadata from config, fleetd's
agent_ttl 10 s: long enough that lease expiry alone (at least 2/3 of it after a
fleetd stops refreshing, it refreshes every ttl/3) cannot explain what a test
says happens "at once". fleetctl runs from this machine (as after
``eval $(fleetlab env)``) unless a test says otherwise. Every test leaves the
cluster without units.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from tests.lab.conftest import fresh_lab, require_root, session_lock
from tests.lab.fleet_helpers import (
    UNIT_FILES,
    active_on,
    destroy_all,
    eventually,
    fleetctl,
    ok,
    placement,
    reasons,
    restart_fleetd,
    running,
    systemd_units,
    table,
    unit_files,
    via,
    write_units,
)
from tests.lab.fleet_helpers import waiting as waiting_units

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

TTL = 10
AT_ONCE = 3.0  # s: "at once" (0.5 s measured) on a noisy machine; expiry takes >= 6.7 s
METADATA = {
    "core-01": "region=us-east,disk=ssd,hostname=core-01",
    "core-02": "region=us-west,hostname=core-02",
    "core-03": "region=us-east,hostname=core-03",
}


@pytest.fixture(scope="module")
def sched() -> Iterator[Lab]:
    require_root()
    with session_lock("flsched"):
        lab = fresh_lab("flsched", "172.17.40.0/24")
        lab.up(hosts=3, etcd_members=3, metadata=METADATA,
               fleet_env={"FLEET_AGENT_TTL": str(TTL)})
        try:
            yield lab
        finally:
            lab.down()


@pytest.fixture
def lab(sched: Lab, tmp_path: Path) -> Iterator[Lab]:
    """The module's lab, with no units before and after the test."""
    yield sched
    destroy_all(sched)


def ids(lab: Lab) -> dict[str, str]:
    return {h.name: h.machine_id for h in lab.hosts}


def test_machines_carry_their_configured_metadata(lab: Lab) -> None:
    out = ok(fleetctl(lab, "list-machines", "--no-legend", "--full"))
    assert {row[0]: row[2] for row in table(out)} == {
        ids(lab)["core-01"]: "disk=ssd,hostname=core-01,region=us-east",
        ids(lab)["core-02"]: "hostname=core-02,region=us-west",
        ids(lab)["core-03"]: "hostname=core-03,region=us-east",
    }


def test_five_conflicting_units_on_three_hosts(lab: Lab, tmp_path: Path) -> None:
    names = [f"c@{i}.service" for i in range(1, 6)]
    paths = write_units(tmp_path, dict.fromkeys(names, "Conflicts=c@*.service"))
    done = fleetctl(lab, "start", "--block-attempts=8", *paths)
    assert done.returncode == 1, done.stdout + done.stderr
    # Which three get a machine depends on the order the engine sees them.
    placed = sorted(line.split()[1] for line in done.stdout.splitlines() if "launched on" in line)
    left = sorted(set(names) - set(placed))
    assert len(placed) == 3 and len(left) == 2, done.stdout
    for name in left:
        assert (f"Unit {name} is waiting to be scheduled: Conflicts: c@*.service runs on every "
                "eligible machine (") in done.stderr
        assert (f"Error waiting for units: timed out waiting for unit {name} to be scheduled "
                "on a machine") in done.stderr
    where = running(lab, placed)
    assert where is not None and len(set(where.values())) == 3
    files = unit_files(lab)
    assert files[left[0]] == files[left[1]] == ["launched", "waiting", "-"]
    assert set(reasons(lab)) == set(left)
    status = fleetctl(lab, "status", left[0])
    assert status.returncode == 1
    assert status.stderr.startswith(f"Unit {left[0]} is waiting to be scheduled: Conflicts:")
    # One of them stops for good: a waiting one takes its place.
    ok(fleetctl(lab, "destroy", placed[0]))
    eventually(lambda: len(reasons(lab)) == 1, what="a waiting unit placed once one is gone")
    now = [n for n in names if n != placed[0]]
    where = eventually(lambda: running(lab, [n for n in now if n not in reasons(lab)]),
                       what="three running again")
    assert len(where) == 3 and len(set(where.values())) == 3


def test_one_way_and_multiple_conflicts_and_machine_id(lab: Lab, tmp_path: Path) -> None:
    host = ids(lab)
    first = write_units(tmp_path, {
        # x runs on the only ssd machine, core-01, and refuses z next to it.
        "x.service": "MachineMetadata=disk=ssd\nConflicts=z.service",
        # MachineID, full and short (8 characters)
        "a.service": f"MachineID={host['core-02']}",
        "b.service": f"MachineID={host['core-03'][:8]}",
    })
    ok(fleetctl(lab, "start", *first))
    then = write_units(tmp_path, {
        "y.service": "MachineMetadata=disk=ssd\nConflicts=x.service",  # y refuses x
        "z.service": "MachineMetadata=disk=ssd",  # z itself has nothing against x
        "w.service": "Conflicts=x.service",  # anywhere but beside x
        "m.service": "Conflicts=a.service b.service",  # neither beside a nor b
        "n.service": "Conflicts=a.service b.service x.service",
        "lost.service": "MachineID=0123456789abcdef0123456789abcdef",
    })
    ok(fleetctl(lab, "start", "--no-block", *then))
    where = eventually(lambda: running(lab, ["x.service", "w.service", "a.service", "b.service",
                                             "m.service"]), what="placed units running")
    assert where["x.service"] == "core-01"
    assert where["w.service"] != "core-01"
    assert (where["a.service"], where["b.service"], where["m.service"]) == (
        "core-02", "core-03", "core-01")
    waiting = eventually(lambda: waiting_units(lab, 4),
                         what="four units waiting")
    short = host["core-01"][:8]
    assert waiting["y.service"] == (
        "MachineMetadata disk=ssd: 1 of 3 machines match "
        f"({short}); Conflicts: x.service runs on every eligible machine ({short}: x.service)")
    assert waiting["z.service"].endswith(
        f"Conflicts: a conflicting unit runs on every eligible machine ({short}: x.service "
        "(its Conflicts=z.service))")
    assert waiting["n.service"].startswith("Conflicts: a conflicting unit runs on every eligible")
    assert waiting["lost.service"] == (
        "MachineID=0123456789abcdef0123456789abcdef: no such machine among 3 machines")


def test_replaces_takes_the_place_and_moves_the_old_unit(lab: Lab, tmp_path: Path) -> None:
    old, new = write_units(tmp_path, {"old.service": "", "new.service": "Replaces=old.service"})
    ok(fleetctl(lab, "start", old))
    before = eventually(lambda: running(lab, ["old.service"]))["old.service"]
    out = ok(fleetctl(lab, "start", new))
    assert out.endswith(f"/{next(h.ip for h in lab.hosts if h.name == before)}\n"), out
    after = eventually(lambda: running(lab, ["old.service", "new.service"]),
                       what="both running")
    assert after["new.service"] == before
    assert after["old.service"] != before
    eventually(lambda: active_on(lab, before, "old.service") != "active",
               what="old.service gone from the replaced machine")


def test_global_units_on_every_host_and_on_a_host_that_joins(lab: Lab, tmp_path: Path) -> None:
    paths = write_units(tmp_path, {
        "g.service": "Global=true",
        "east.service": "Global=true\nMachineMetadata=region=us-east",
    })
    out = ok(fleetctl(lab, "start", *paths))
    assert sorted(out.splitlines()[-2:]) == ["Triggered global unit east.service start",
                                             "Triggered global unit g.service start"]

    def hosts_running(unit: str) -> set[str]:
        return {h.name for h in lab.hosts
                if h.pid is not None and active_on(lab, h.name, unit) == "active"}

    eventually(lambda: hosts_running("g.service") == {"core-01", "core-02", "core-03"},
               what="g on every host")
    eventually(lambda: hosts_running("east.service") == {"core-01", "core-03"},
               what="east on the us-east hosts")
    assert unit_files(lab)["g.service"] == ["launched", "-", "global"]
    fillers = write_units(tmp_path, {f"fill-{h}.service": f"MachineID={ids(lab)[h]}"
                                     for h in ("core-01", "core-03")})
    ok(fleetctl(lab, "start", *fillers))
    joined = lab.host_add("region=us-east")
    try:
        assert joined == "core-04"
        eventually(lambda: {"core-04"} <= hosts_running("g.service"), what="g on the new host")
        eventually(lambda: {"core-04"} <= hosts_running("east.service"),
                   what="east on the new us-east host")
        # The new machine also takes new units: it is the least loaded.
        (fresh,) = write_units(tmp_path, {"fresh.service": "MachineMetadata=region=us-east"})
        assert ok(fleetctl(lab, "start", fresh)).endswith("/172.17.40.104\n")
    finally:
        destroy_all(lab)
        lab.host_stop("core-04")  # a poweroff: it leaves the cluster at once
    eventually(lambda: len(table(ok(fleetctl(lab, "list-machines", "--no-legend")))) == 3,
               what="core-04 gone from list-machines")


def test_metadata_templates_and_metadata_set_at_runtime(lab: Lab, tmp_path: Path) -> None:
    template = tmp_path / "web@.service"
    write_units(tmp_path, {"web@.service": "MachineMetadata=hostname=%i"})
    ok(fleetctl(lab, "submit", str(template)))
    out = ok(fleetctl(lab, "start", "web@core-02.service"))
    assert out.endswith("/172.17.40.102\n"), out
    done = fleetctl(lab, "start", "--block-attempts=4", "web@core-09.service")
    assert done.returncode == 1
    assert ("Unit web@core-09.service is waiting to be scheduled: no machine matches "
            "MachineMetadata hostname=core-09 (3 machines: ") in done.stderr
    core03 = ids(lab)["core-03"]
    try:
        # core-03 now says it is core-09: the waiting unit goes there.
        out = ok(fleetctl(lab, "set-metadata", core03[:8], "hostname=core-09"))
        assert out == f"Machine {core03[:8]}.../172.17.40.103 metadata: " \
                      "hostname=core-09,region=us-east\n"
        where = eventually(lambda: running(lab, ["web@core-09.service"]), what="web@core-09")
        assert where == {"web@core-09.service": "core-03"}
        # fleetd keeps the change across its own restart...
        restart_fleetd(lab, "core-03", "restart", [])  # awaits its registration
        listed = table(ok(fleetctl(lab, "list-machines", "--no-legend", "--full")))
        assert {row[0]: row[2] for row in listed}[core03] == "hostname=core-09,region=us-east"
        # ...and the unit leaves when the metadata no longer matches.
        ok(fleetctl(lab, "set-metadata", "172.17.40.103", "--remove", "hostname"))
        eventually(lambda: "web@core-09.service" in reasons(lab), what="web@core-09 waiting")
        eventually(lambda: active_on(lab, "core-03", "web@core-09.service") != "active",
                   what="web@core-09 stopped on core-03")
    finally:
        ok(fleetctl(lab, "set-metadata", "172.17.40.103", "hostname=core-03"))
    bad = fleetctl(lab, "set-metadata", "172.17.40.103", "hostname")
    assert (bad.returncode, bad.stderr) == (
        1, "Error: invalid metadata 'hostname': expected key=value\n")


def test_host_poweroff_moves_units_and_what_cannot_move_waits(lab: Lab, tmp_path: Path) -> None:
    host = ids(lab)
    paths = write_units(tmp_path, {
        "db.service": "MachineMetadata=region=us-east",
        "side.service": "MachineOf=db.service",
    })
    ok(fleetctl(lab, "start", *paths))
    before = eventually(lambda: running(lab, ["db.service", "side.service"]))
    gone = before["db.service"]
    other = {"core-01": "core-03", "core-03": "core-01"}[gone]  # the other us-east host
    assert before["side.service"] == gone
    (pin,) = write_units(tmp_path, {"pin.service": f"MachineID={host[gone]}"})
    nginx = [str(UNIT_FILES / "instances" / f"{p}@{i}.service")
             for i in (5555, 6666, 7777) for p in ("nginx", "nginx-discovery")]
    ok(fleetctl(lab, "start", pin, *nginx))
    nginx_there = next(u for u, (h, _) in placement(lab).items()
                       if h == gone and u.startswith("nginx@"))
    # Measured from the poweroff call (which returns once the host is gone) to both
    # units active in the other host's systemd: its fleetd leaving (lease revoked)
    # moves them at once; without that, only the lease's expiry would, >= 2/3 TTL.
    started = time.monotonic()
    lab.host_stop(gone)
    try:
        eventually(lambda: active_on(lab, other, "db.service") == "active"
                   and active_on(lab, other, "side.service") == "active",
                   timeout=TTL + 5, what="db and side active on the other host", every=0.05)
        elapsed = time.monotonic() - started
        assert elapsed < AT_ONCE, f"moved {elapsed:.1f}s after the poweroff (agent_ttl {TTL}s)"
        where = eventually(lambda: running(lab, ["db.service", "side.service"]),
                           what="db and side reported running")
        assert where["side.service"] == where["db.service"] == other
        waiting = eventually(lambda: waiting_units(lab, 3),
                             what="pin and the stopped host's nginx pair waiting")
        assert waiting["pin.service"] == (
            f"MachineID={host[gone]}: no such machine among 2 machines")
        assert waiting[nginx_there].startswith("Conflicts: nginx@*.service runs on every")
        discovery = nginx_there.replace("nginx@", "nginx-discovery@")
        assert waiting[discovery] == (
            f"MachineOf={nginx_there}: waiting for {nginx_there} to be scheduled")
        on_hosts = [h for u, (h, _) in placement(lab).items() if u.startswith("nginx@")]
        assert len(on_hosts) == len(set(on_hosts)) == 2
    finally:
        lab.host_start(gone)
    # Back: the pinned unit and the nginx pair return there; db and side stay put.
    everything = ["db.service", "side.service", "pin.service", nginx_there,
                  nginx_there.replace("nginx@", "nginx-discovery@")]
    after = eventually(lambda: running(lab, everything), what="all running again")
    assert after["pin.service"] == after[nginx_there] == gone
    assert after["db.service"] == after["side.service"] == other
    assert reasons(lab) == {}


def test_dead_fleetd_units_move_and_its_copies_go_when_it_returns(
    lab: Lab, tmp_path: Path
) -> None:
    paths = write_units(tmp_path, {"db.service": "", "side.service": "MachineOf=db.service"})
    ok(fleetctl(lab, "start", *paths))
    first = eventually(lambda: running(lab, ["db.service", "side.service"]))["db.service"]
    copies = systemd_units(lab, first, ["db.service", "side.service"])
    ok(lab.exec(first, ["systemctl", "kill", "--signal=KILL", "fleet.service"]))
    ok(lab.exec(first, ["systemctl", "stop", "fleet.service"]))
    started = time.monotonic()

    def elsewhere() -> set[str] | None:
        now = running(lab, ["db.service", "side.service"])
        hosts = set(now.values()) if now else {first}
        return hosts if len(hosts) == 1 and first not in hosts else None

    try:
        # fleetctl asks another member: the one `fleetlab env` names may be the dead one
        with via(lab, next(h.name for h in lab.hosts if h.name != first)):
            eventually(elsewhere, timeout=TTL + 10, what="db and side on one other host",
                       every=0.1)
        elapsed = time.monotonic() - started
        # A crash does not revoke the lease: it expires 2/3 TTL..TTL after the kill
        # (refreshed every TTL/3), and that is what moves the units. The upper margin
        # (5 s past TTL) is the engine's pass and the start elsewhere on a noisy machine.
        assert TTL * 2 / 3 - 1 < elapsed < TTL + 5, f"moved after {elapsed:.1f}s (agent_ttl {TTL}s)"
        # The dead fleetd's units still run there, untouched: a second copy, until it
        # returns.
        assert systemd_units(lab, first, ["db.service", "side.service"]) == copies
    finally:
        ok(lab.exec(first, ["systemctl", "start", "fleet.service"]))
    eventually(lambda: active_on(lab, first, "db.service") != "active"
               and active_on(lab, first, "side.service") != "active",
               what="the returning fleetd unloading its stale copies")
    assert lab.exec(first, ["ls", "/run/fleet/units"]).stdout.split() == []
    journal = lab.exec(first, ["journalctl", "-u", "fleet.service", "--no-pager", "-n", "60"])
    assert "unload db.service: unit db.service not scheduled here" in journal.stdout
    assert "registered machine" in journal.stdout  # its lease had expired: a new one
