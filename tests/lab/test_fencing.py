"""StopWhenDisconnected on a lab of its own, observed on the hosts (systemd), not in etcd.

Lab ``flfence`` (172.17.53.0/24): 3 hosts, 3 etcd members, agent_ttl 10 s. A
fenced unit and an unfenced unit run on one host (the engine leader's, then
another's); that host is partitioned (``Lab.partition``: no traffic to etcd or
the other hosts, its systemd and units keep running) for longer than
agent_ttl, then healed. An observer inside every host samples systemd
(ActiveState and InvocationID of both units, ~10 times a second, timestamped
by the kernel's clock that all hosts share) for the whole test. Running
intervals are counted pessimistically (from the last sample that saw the unit
down to the first that saw it down again; ``deactivating`` counts as running),
so an overlap is never missed by sampling. The fenced unit takes STOP_TAKES
seconds to stop (ExecStop=), so that both margins matter: without the agent's
stop it runs on through the partition; without the engine's wait its new copy
starts (at the lease's expiry) while the old one is still stopping. A second
test stops every etcd member for longer than agent_ttl: the fenced unit stops,
and starts again in place once etcd is back; the unfenced one never stops;
nothing moves.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.faults_analysis import doubled
from fleetpy.lab import Lab
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import etcdctl, eventually, fleetctl, ok, via

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

TTL = 10
UNITS = ("f.service", "u.service")
RUNNING = frozenset({"active", "activating", "deactivating", "reloading"})
PLACE = "[X-Fleet]\nMachineMetadata=fence=ok\n"
STOP_TAKES = 5  # f.service's ExecStop: a graceful stop within the 2/3 ttl budget (6.7 s)
FENCED = (f"[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sleep {STOP_TAKES}\n"
          f"TimeoutStopSec={STOP_TAKES + 1}\n\n{PLACE}StopWhenDisconnected=true\n")
PLAIN = "[Service]\nExecStart=/bin/sleep infinity\n\n" + PLACE
SAMPLER = (
    "while :; do t=$(date +%s.%N); echo \"@ $t\"; "
    "systemctl show -p Id -p ActiveState -p InvocationID {units}; sleep 0.1; done"
)


@dataclass
class Observer:
    """Samples of every host: (time, host, unit, ActiveState, InvocationID)."""

    lab: Lab
    units: tuple[str, ...] = UNITS
    samples: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for host in self.lab.hosts:
            sampler = SAMPLER.format(units=" ".join(self.units))
            argv, env = self.lab.command(host.name, ["sh", "-c", sampler])
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
            self.procs.append(proc)
            thread = threading.Thread(target=self._read, args=(host.name, proc), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _read(self, host: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        now = 0.0
        props: dict[str, str] = {}
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("@ "):
                self._keep(now, host, props)
                props = {}
                now = float(line[2:])
                continue
            if not line:
                self._keep(now, host, props)
                props = {}
                continue
            key, _, value = line.partition("=")
            props[key] = value
        self._keep(now, host, props)

    def _keep(self, now: float, host: str, props: dict[str, str]) -> None:
        if props.get("Id") in self.units:
            with self.lock:
                self.samples.append((now, host, props["Id"], props.get("ActiveState", ""),
                                     props.get("InvocationID", "")))

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)

    def now(self, unit: str) -> dict[str, tuple[str, str]]:
        """host -> (ActiveState, InvocationID) of ``unit`` in each host's latest sample."""
        with self.lock:
            latest: dict[str, tuple[str, str]] = {}
            for _, host, name, active, invocation in self.samples:
                if name == unit:
                    latest[host] = (active, invocation)
        return latest

    def running_on(self, unit: str) -> set[str]:
        return {h for h, (active, _) in self.now(unit).items() if active in RUNNING}

    def intervals(self, unit: str, end: float) -> dict[str, list[tuple[float, float, str]]]:
        """host -> pessimistic running intervals (start, end, InvocationID) of ``unit``."""
        with self.lock:
            samples = sorted(s for s in self.samples if s[2] == unit)
        out: dict[str, list[tuple[float, float, str]]] = {}
        by_host: dict[str, list[tuple[float, str, str]]] = {}
        for t, host, _, active, invocation in samples:
            by_host.setdefault(host, []).append((t, active, invocation))
        for host, seq in by_host.items():
            spans: list[tuple[float, float, str]] = []
            start: float | None = None
            invocation = ""
            previous = seq[0][0]
            for t, active, inv in seq:
                if active in RUNNING and start is None:
                    start, invocation = previous, inv
                elif active not in RUNNING and start is not None:
                    spans.append((start, t, invocation))
                    start = None
                previous = t
            if start is not None:
                spans.append((start, end, invocation))
            out[host] = spans
        return out


def overlap(spans: dict[str, list[tuple[float, float, str]]], since: float = 0.0) -> float:
    """Seconds (after ``since``) during which the unit ran on two hosts or more (the
    fault bench's rule, bench.faults_analysis.doubled)."""
    return doubled([[(max(s, since), e) for s, e, _ in ss if e > since]
                    for ss in spans.values()])


@pytest.fixture(scope="module")
def fence_lab() -> Iterator[Lab]:
    with own_lab("flfence", "172.17.53.0/24", hosts=3, etcd_members=3,
                 fleet_env={"FLEET_AGENT_TTL": str(TTL)}) as the_lab:
        yield the_lab


@pytest.fixture
def lab(fence_lab: Lab) -> Iterator[Lab]:
    """The module's lab; the test's units destroyed afterwards."""
    yield fence_lab
    with via(fence_lab, "core-02"):
        names = ok(fleetctl(fence_lab, "list-unit-files", "--no-legend", "--fields=unit")).split()
        if names:
            ok(fleetctl(fence_lab, "destroy", *names))

    def stopped() -> bool:  # a unit's ExecStop takes seconds: wait until every copy is down
        return not names or not any(
            set(fence_lab.exec(h.name, ["systemctl", "show", "-p", "ActiveState", "--value",
                                        *names]).stdout.split()) & RUNNING
            for h in fence_lab.hosts)

    eventually(stopped, timeout=60, what="the test's units stopped on every host")


def engine_leader(lab: Lab) -> str | None:
    """The host whose fleetd leads the engine (from etcd's leader key), None if none."""
    value = etcdctl(lab, "get", "--print-value-only", "/fleetpy/engine/leader").strip()
    if not value:
        return None
    machine_id = json.loads(value)["machine_id"]
    return next(h.name for h in lab.hosts if h.machine_id == machine_id)


@pytest.mark.parametrize("cut_leads", [True, False],
                         ids=["cut-host-leads-the-engine", "another-host-leads"])
def test_partition_longer_than_ttl_never_runs_a_fenced_unit_twice(
    lab: Lab, tmp_path: Path, cut_leads: bool
) -> None:
    """When the cut-off host leads the engine, a newly elected engine moves the unit
    (counting the margin from its own start); otherwise the leader saw the host go."""
    hosts = {h.name: h for h in lab.hosts}
    lead = eventually(lambda: engine_leader(lab), what="an engine leader")
    cut = lead if cut_leads else next(n for n in sorted(hosts) if n != lead)
    others = [n for n in sorted(hosts) if n != cut]
    key = f"fence{int(cut_leads)}"
    place = f"[X-Fleet]\nMachineMetadata={key}=ok\n"
    (tmp_path / "f.service").write_text(FENCED.replace(PLACE, place))
    (tmp_path / "u.service").write_text(PLAIN.replace(PLACE, place))
    with via(lab, others[0]):  # fleetctl never talks to the host that will be cut off
        ok(fleetctl(lab, "set-metadata", hosts[cut].machine_id[:8], f"{key}=ok"))
        ok(fleetctl(lab, "start", "--no-block", *(str(tmp_path / n) for n in UNITS)))
        observer = Observer(lab)
        observer.start()
        try:
            eventually(lambda: all(observer.running_on(u) == {cut} for u in UNITS),
                       timeout=60, what=f"both units running on {cut}")
            placed = time.time()
            for other in others:  # they may move there from now on
                ok(fleetctl(lab, "set-metadata", hosts[other].machine_id[:8], f"{key}=ok"))
            u_before = observer.now("u.service")[cut][1]
            started = time.time()
            lab.partition(cut)
            try:
                moved = eventually(lambda: observer.running_on("f.service") - {cut},
                                   timeout=4 * TTL, what="f.service running elsewhere")
                f_moved_after = time.time() - started
                eventually(lambda: observer.running_on("u.service") - {cut},
                           timeout=4 * TTL, what="u.service running elsewhere")
                # the unfenced unit still runs on the cut-off host, the same process
                assert observer.now("u.service")[cut] == ("active", u_before)
                assert cut not in observer.running_on("f.service")
                partitioned = time.time() - started
            finally:
                lab.heal(cut)
            healed = time.time()
            # back: its stale copy of u.service is stopped, f.service is not started there
            eventually(lambda: cut not in observer.running_on("u.service"), timeout=4 * TTL,
                       what=f"u.service stopped on {cut} after the heal")
            eventually(lambda: len(observer.running_on("f.service")) == 1, timeout=TTL,
                       what="f.service on one host")
            time.sleep(2)  # a start on cut-off host after the heal would show by now
            end = time.time()
        finally:
            observer.stop()
    f_spans = observer.intervals("f.service", end)
    u_spans = observer.intervals("u.service", end)
    f_overlap, u_overlap = overlap(f_spans, placed), overlap(u_spans, placed)
    f_cut_stop = min(e for s, e, _ in f_spans.get(cut, []) if e > started) - started
    f_gap = min(s for h, ss in f_spans.items() if h != cut for s, e, _ in ss if e > placed) - (
        started + f_cut_stop)
    figures = {
        "agent_ttl": TTL, "cut_host_led_the_engine": cut_leads,
        "partitioned_s": round(partitioned, 1),
        "f_stopped_on_cut_host_after_s": round(f_cut_stop, 1),
        "f_running_elsewhere_after_s": round(f_moved_after, 1),
        "f_gap_between_copies_s": round(f_gap, 1),
        "f_overlap_s": round(f_overlap, 2), "u_overlap_s": round(u_overlap, 1),
        "u_stale_copy_stopped_after_heal_s": round(
            min(e for s, e, _ in u_spans[cut] if e > healed) - healed, 1),
        "samples": len(observer.samples),
    }
    print("fencing figures:", json.dumps(figures))
    journal = lab.exec(cut, ["journalctl", "-u", "fleet.service", "--no-pager", "-o", "cat",
                             f"--since=@{int(started) - 1}"])
    decided = [line for line in journal.stdout.splitlines()
               if "stopping the units with StopWhenDisconnected" in line]
    assert len(decided) == 1 and "f.service" in decided[0], decided  # said once, naming it
    assert f_overlap == 0.0, (figures, f_spans)
    assert moved and cut not in moved
    # f ran on exactly one other host since the move, and never again on the cut-off host
    assert not [s for s, _, _ in f_spans.get(cut, []) if s > started], f_spans[cut]
    # u.service: one run on the cut-off host, through the partition, stopped after the heal
    assert [inv for s, e, inv in u_spans[cut] if e > started] == [u_before]
    assert min(e for s, e, _ in u_spans[cut] if e > started) >= healed - 0.5
    assert u_overlap > 0  # the default: both copies ran during the partition


def test_total_etcd_outage_stops_fenced_units_and_moves_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    """Every etcd member down for longer than agent_ttl: the fenced unit stops (its agent
    cannot tell this from a partition) and starts again in place once etcd is back (etcd
    extends the leases); the unfenced unit never stops; nothing moves."""
    host = "core-01"
    units = ("g.service", "v.service")
    place = PLACE.replace("fence=ok", "outage=ok")
    (tmp_path / "g.service").write_text(FENCED.replace(PLACE, place))
    (tmp_path / "v.service").write_text(PLAIN.replace(PLACE, place))
    machine = next(h.machine_id for h in lab.hosts if h.name == host)
    with via(lab, "core-02"):
        ok(fleetctl(lab, "set-metadata", machine[:8], "outage=ok"))
        ok(fleetctl(lab, "start", "--no-block", *(str(tmp_path / n) for n in units)))
    observer = Observer(lab, units)
    observer.start()
    try:
        eventually(lambda: all(observer.running_on(u) == {host} for u in units),
                   timeout=60, what=f"both units running on {host}")
        g_before, v_before = (observer.now(u)[host][1] for u in units)
        started = time.time()
        lab.etcd_stop(None)
        try:
            eventually(lambda: not observer.running_on("g.service"), timeout=3 * TTL,
                       what="g.service stopped while etcd is down")
            g_stopped = time.time() - started
            time.sleep(max(0.0, 1.5 * TTL - (time.time() - started)))  # longer than agent_ttl
            assert observer.now("v.service")[host] == ("active", v_before)
        finally:
            lab.etcd_start(None)
        back = time.time()
        again = eventually(lambda: observer.now("g.service").get(host, ("", ""))
                           if observer.running_on("g.service") == {host} else None,
                           timeout=6 * TTL, what=f"g.service running again on {host}")
        g_again = time.time() - back
        time.sleep(3)
        end = time.time()
    finally:
        observer.stop()
    g_spans = observer.intervals("g.service", end)
    v_spans = observer.intervals("v.service", end)
    print("outage figures:", json.dumps({
        "etcd_down_s": round(back - started, 1), "g_stopped_after_s": round(g_stopped, 1),
        "g_running_again_after_etcd_back_s": round(g_again, 1)}))
    assert again[1] != g_before  # a new start, in place
    assert {h for h, spans in g_spans.items() if spans} == {host}  # never anywhere else
    assert [inv for _, _, inv in g_spans[host]] == [g_before, again[1]]
    # the unfenced unit: one run, never interrupted, never anywhere else
    assert {h for h, spans in v_spans.items() if spans} == {host}
    assert [inv for _, _, inv in v_spans[host]] == [v_before]
