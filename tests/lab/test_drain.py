"""Cordon and drain on a lab of its own (``flcordon``, 172.17.64.0/24, 3 hosts).

- cordon keeps new units away, says why a unit that fits nowhere else waits,
  and survives a restart of the machine's fleetd;
- drain of the host running one of the seed's nginx pairs moves the pair
  together and the page stays served. The demo's page is served on the
  host's own address, so one instance moving is a gap by design (stop there,
  start elsewhere): the test runs 2 instances, as a client of the demo would
  (it reads /services/nginx/ and takes any address that answers), and counts
  0 failures in a bounded curl loop while the drained instance moves;
- drain with a unit pinned by MachineID reports it, and with --deadline stops
  it at the deadline (it then waits, naming the drain);
- drain --no-block returns at once and fleetd paces the drain (never fewer than
  instances - max_parallel active, observed in systemd on the hosts); a new
  engine leader carries it on, and fleetd enforces its deadline with no
  fleetctl running.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import (
    UNIT_FILES,
    active_on,
    active_on_hosts,
    destroy_all,
    etcdctl,
    eventually,
    fleetctl,
    key_revision,
    ok,
    placement,
    reasons,
    restart_fleetd,
    running,
    table,
    write_units,
)
from tests.lab.fleet_helpers import waiting as waiting_units
from tests.lab.test_fencing import engine_leader

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cordon_lab() -> Iterator[Lab]:
    with own_lab("flcordon", "172.17.64.0/24", hosts=3, etcd_members=3) as lab:
        yield lab


@pytest.fixture
def lab(cordon_lab: Lab) -> Iterator[Lab]:
    """The module's lab with no units and no cordons before and after the test."""
    yield cordon_lab
    for h in cordon_lab.hosts:
        fleetctl(cordon_lab, "uncordon", h.machine_id)
    destroy_all(cordon_lab)
    etcdctl(cordon_lab, "del", "--prefix", "/services/nginx/")


def mid(lab: Lab, host: str) -> str:
    return next(h.machine_id for h in lab.hosts if h.name == host)


def states(lab: Lab) -> dict[str, str]:
    rows = json.loads(ok(fleetctl(lab, "list-machines", "-o", "json", "--full")))
    return {r["machine"]: r["state"] for r in rows}


def test_cordon_keeps_new_units_away_and_says_why_they_wait(lab: Lab, tmp_path: Path) -> None:
    c3 = mid(lab, "core-03")
    ok(fleetctl(lab, "cordon", c3[:8], "--reason", "maintenance"))
    assert states(lab)[c3] == "cordoned"
    shown = ok(fleetctl(lab, "list-machines", "--no-legend"))
    assert [row[-1] for row in table(shown)].count("cordoned") == 1
    # survives a restart of the machine's own fleetd
    restart_fleetd(lab, "core-03", "restart", [])
    assert states(lab)[c3] == "cordoned"

    paths = write_units(tmp_path, {
        "spread@1.service": "Conflicts=spread@*", "spread@2.service": "Conflicts=spread@*",
        "spread@3.service": "Conflicts=spread@*", "pinned.service": f"MachineID={c3[:8]}",
    })
    ok(fleetctl(lab, "start", "--no-block", *paths))
    spread = ["spread@1.service", "spread@2.service"]
    where = eventually(lambda: running(lab, spread), timeout=60, what="two spread units active")
    assert sorted(where.values()) == ["core-01", "core-02"]  # never the cordoned core-03
    why = eventually(lambda: waiting_units(lab, 2), timeout=30, what="two units waiting")
    assert why["pinned.service"] == f"machine {c3[:8]} is cordoned"
    assert f"machine {c3[:8]} is cordoned" in why["spread@3.service"]
    assert "Conflicts: spread@*" in why["spread@3.service"]
    assert "spread@3.service" not in placement(lab)

    ok(fleetctl(lab, "uncordon", c3[:8]))
    assert states(lab)[c3] == "ready"
    where = eventually(lambda: running(lab, ["pinned.service", "spread@3.service"]),
                       timeout=60, what="waiting units placed on the uncordoned machine")
    assert where == {"pinned.service": "core-03", "spread@3.service": "core-03"}


class Client:
    """A client of the demo: each request reads /services/nginx/ and uses any address
    that answers. Counts requests and those no registered address served."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.requests = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def once(self) -> None:
        out = etcdctl(self.lab, "get", "--prefix", "/services/nginx/", "--print-value-only")
        backends = [json.loads(line) for line in out.splitlines() if line.strip()]
        errors = []
        for b in backends:
            try:
                url = f"http://{b['ipv4_addr']}:{b['port']}/"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:
                errors.append(f"{b['ipv4_addr']}:{b['port']}: {exc}")
        self.failures.append("; ".join(errors) or "no backend registered")

    def run(self) -> None:
        for _ in range(3000):  # bounded: ~0.1 s each, the drain ends well before
            if self.stop.is_set():
                return
            self.requests += 1
            self.once()
            time.sleep(0.05)


def test_drain_moves_the_nginx_pair_together_and_the_page_stays_served(lab: Lab) -> None:
    pairs = [f"{UNIT_FILES}/instances/{kind}@{port}.service"
             for port in (5555, 6666) for kind in ("nginx", "nginx-discovery")]
    ok(fleetctl(lab, "start", *pairs))
    names = [p.rsplit("/", 1)[1] for p in pairs]
    where = eventually(lambda: running(lab, names), timeout=60, what="two nginx pairs active")
    source = where["nginx@5555.service"]
    assert where["nginx-discovery@5555.service"] == source
    free = ({"core-01", "core-02", "core-03"} - {source, where["nginx@6666.service"]}).pop()
    eventually(lambda: len(etcdctl(lab, "get", "--prefix", "/services/nginx/",
                                   "--keys-only").split()) == 2,
               timeout=30, what="both instances registered")

    client = Client(lab)
    client.thread.start()
    try:
        eventually(lambda: client.requests >= 5, what="the client running")
        started = time.monotonic()
        out = ok(fleetctl(lab, "drain", mid(lab, source)[:8], timeout=180))
        took = time.monotonic() - started
    finally:
        client.stop.set()
        client.thread.join(30)
    assert "Machine " in out and "drained: 2 unit(s) moved" in out, out
    assert "1 moved, 0 left" not in out  # the pair counts as two units moving together
    assert "2 moved, 0 left" in out, out
    now = running(lab, names)
    assert now is not None
    assert now["nginx@5555.service"] == now["nginx-discovery@5555.service"] == free
    assert now["nginx@6666.service"] == where["nginx@6666.service"]  # the other one stayed
    assert active_on(lab, source, "nginx@5555.service") != "active"
    assert client.requests >= 10, client.requests
    assert client.failures == [], f"{len(client.failures)} of {client.requests}: " \
                                  f"{client.failures[:3]} (drain took {took:.1f}s)"
    assert states(lab)[mid(lab, source)] == "draining"


def test_drain_reports_a_pinned_unit_and_stops_it_at_the_deadline(
    lab: Lab, tmp_path: Path
) -> None:
    c2 = mid(lab, "core-02")
    paths = write_units(tmp_path, {"pinned.service": f"MachineID={c2[:8]}"})
    ok(fleetctl(lab, "start", *paths))
    eventually(lambda: running(lab, ["pinned.service"]), timeout=60, what="pinned active")

    stays = fleetctl(lab, "drain", c2[:8], timeout=60)
    assert stays.returncode == 1, stays
    assert f"pinned.service cannot move: pinned by MachineID={c2[:8]}" in stays.stdout
    assert "1 unit(s) could not move: pinned.service" in stays.stdout
    assert active_on(lab, "core-02", "pinned.service") == "active"

    started = time.monotonic()
    done = fleetctl(lab, "drain", c2[:8], "--deadline", "6s", timeout=90)
    took = time.monotonic() - started
    assert done.returncode == 0, done
    assert "Deadline reached: stopping pinned.service" in done.stdout
    assert "Stopped at the deadline: pinned.service" in done.stdout
    assert took >= 6, took
    assert active_on(lab, "core-02", "pinned.service") != "active"
    assert reasons(lab) == {"pinned.service": f"machine {c2[:8]} is draining"}
    ok(fleetctl(lab, "uncordon", c2[:8]))
    eventually(lambda: running(lab, ["pinned.service"]), timeout=60,
               what="pinned back once uncordoned")


SLOW = ("[Unit]\nDescription={name}\n\n[Service]\nExecStartPre=/bin/sleep 3\n"
        "ExecStart=/bin/sleep infinity\n")


def start_on_core01(lab: Lab, tmp_path: Path, names: list[str],
                    more: list[str] | None = None) -> None:
    """Start the SLOW instances ``names`` (and the unit files ``more``) all on core-01:
    the other hosts cordoned meanwhile; returns once systemd there has them active."""
    paths = []
    for name in names:
        (tmp_path / name).write_text(SLOW.format(name=name))
        paths.append(str(tmp_path / name))
    for host in ("core-02", "core-03"):
        ok(fleetctl(lab, "cordon", mid(lab, host)))
    ok(fleetctl(lab, "start", *paths, *(more or []), timeout=90))
    for host in ("core-02", "core-03"):
        ok(fleetctl(lab, "uncordon", mid(lab, host)))
    eventually(lambda: all(active_on_hosts(lab, names)[n] == {"core-01"} for n in names),
               timeout=60, what=f"{len(names)} instances active on core-01")


def test_drain_no_block_returns_at_once_and_fleetd_paces_it(lab: Lab, tmp_path: Path) -> None:
    """Four instances of one service on core-01 (each takes 3 s to become active):
    drain --no-block returns at once, and fleetd alone moves them one at a time, so
    systemd on the hosts never shows fewer than 3 of them active."""
    names = [f"slow@{i}.service" for i in range(1, 5)]
    start_on_core01(lab, tmp_path, names)

    source = mid(lab, "core-01")
    started = time.monotonic()
    out = ok(fleetctl(lab, "drain", source[:8], "--no-block"))
    took = time.monotonic() - started
    at_return = active_on_hosts(lab, names)
    assert took < 10, f"drain --no-block took {took:.1f}s: {out}"
    # a paced drain of four 3 s starts takes 12 s or more: it was not waited for
    assert sum(1 for hosts in at_return.values() if hosts == {"core-01"}) >= 3, at_return
    assert "fleetd moves its units 1 MachineOf group(s) at a time" in out, out

    fewest, polls = 4, 0
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        now = active_on_hosts(lab, names)
        fewest, polls = min(fewest, sum(1 for hosts in now.values() if hosts)), polls + 1
        if all(hosts and "core-01" not in hosts for hosts in now.values()):
            break
    else:
        raise AssertionError(f"not all moved off core-01 in 150 s: {now}")
    assert polls >= 5, polls
    assert fewest >= 3, f"only {fewest} of 4 instances active at one point ({polls} polls)"
    assert states(lab)[source] == "draining"
    # fleetctl drain shows the progress fleetd made, and says the drain is done
    done = ok(fleetctl(lab, "drain", source[:8], timeout=60))
    assert "drained: 4 unit(s) moved" in done, done


def test_a_new_leader_carries_a_drain_on_and_fleetd_enforces_its_deadline(
    lab: Lab, tmp_path: Path
) -> None:
    """drain --no-block --deadline of three slow instances and a pinned unit: the engine
    leader's fleetd restarts mid-drain (a new term, maybe on another host); the drain
    goes on at its pace from the record, and at the deadline, with no fleetctl
    running, fleetd stops the pinned unit."""
    names = [f"slow@{i}.service" for i in range(1, 4)]
    c1 = mid(lab, "core-01")
    start_on_core01(lab, tmp_path, names,
                    write_units(tmp_path, {"pinned.service": f"MachineID={c1[:8]}"}))

    started = time.monotonic()
    ok(fleetctl(lab, "drain", c1[:8], "--no-block", "--deadline", "40s"))
    fewest = 3
    restarted = False
    term = key_revision(lab, "engine/leader")
    while time.monotonic() - started < 120:
        now = active_on_hosts(lab, names)
        fewest = min(fewest, sum(1 for hosts in now.values() if hosts))
        moved = sum(1 for hosts in now.values() if hosts and "core-01" not in hosts)
        if moved >= 1 and not restarted:  # mid-drain: the leader's fleetd restarts
            leader = eventually(lambda: engine_leader(lab), what="an engine leader")
            ok(lab.exec(leader, ["systemctl", "restart", "fleet.service"]))
            restarted = True
        if moved == 3:
            break
    assert restarted and moved == 3, now
    assert key_revision(lab, "engine/leader") > term  # a new term took the drain up
    assert fewest >= 2, f"only {fewest} of 3 instances active at one point"
    assert active_on(lab, "core-01", "pinned.service") == "active"
    assert time.monotonic() - started < 40, "the instances moved too slowly for this test"

    eventually(lambda: active_on(lab, "core-01", "pinned.service") != "active",
               timeout=70, what="the pinned unit stopped at the deadline by fleetd")
    assert time.monotonic() - started >= 40
    assert reasons(lab) == {"pinned.service": f"machine {c1[:8]} is draining"}
