"""Losing etcd never stops healthy units, and fleetd carries on when it returns."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from tests.lab import fleet_helpers as helpers
from tests.lab.fleet_helpers import systemd_units, write_units
from tests.lab.test_walkthrough import (
    HELLO,
    clean,
    eventually,
    fleetctl,
    host_of,
    ok,
    rows,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

__all__ = ["clean"]


def test_etcd_outage_keeps_units_running(lab: Lab, clean: object, tmp_path: Path) -> None:
    out = ok(fleetctl(lab, "core-01", "start", str(HELLO)))
    target = host_of(lab, out.split()[-1])
    before = systemd_units(lab, target, ["hello.service"])
    assert before["hello.service"][0] == "active"
    _, members = lab.status()
    pids = [m.pid for m in members if m.pid]
    assert len(pids) == len(members) >= 3
    for member in pids:
        os.kill(member, signal.SIGSTOP)
    try:
        # The outage itself (not a wait for something): longer than fleetd's request
        # timeout. With agent_ttl 30 s a lease refresh (every 10 s) may not fall in it;
        # the faults suite (python -m bench faults) covers long outages.
        time.sleep(8)
        for host in lab.hosts:
            state = lab.exec(host.name, ["systemctl", "is-active", "fleet.service"]).stdout
            assert state.strip() == "active", f"fleetd on {host.name}: {state}"
        assert systemd_units(lab, target, ["hello.service"]) == before
    finally:
        for member in pids:
            os.kill(member, signal.SIGCONT)
    # etcd is back: the target's agent places a new unit (a reconcile pass after the
    # outage, awaited: start blocks until it reports), and hello.service is still the
    # same invocation, untouched.
    machine = next(h.machine_id for h in lab.hosts if h.name == target)
    (tick,) = write_units(tmp_path, {"tick.service": f"MachineID={machine}"})
    eventually(lambda: fleetctl(lab, "core-02", "list-units", "--no-legend").returncode == 0,
               timeout=30, what="fleetctl answering again")
    assert "launched on" in ok(helpers.fleetctl(lab, "start", tick))
    assert systemd_units(lab, target, ["hello.service"]) == before
    assert rows(ok(fleetctl(lab, "core-02", "list-units")))[0][2:] == ["active", "running"]
    ok(fleetctl(lab, "core-02", "stop", "hello.service"))
    out = ok(fleetctl(lab, "core-03", "start", "hello.service"))
    assert "launched on" in out
