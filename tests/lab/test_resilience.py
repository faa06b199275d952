"""Losing etcd never stops healthy units, and fleetd carries on when it returns."""

from __future__ import annotations

import os
import signal
import time

import pytest

from fleetpy.lab import Lab
from tests.lab.test_walkthrough import (
    HELLO,
    clean,
    eventually,
    fleetctl,
    host_of,
    main_pid,
    ok,
    rows,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

__all__ = ["clean"]


def test_etcd_outage_keeps_units_running(lab: Lab, clean: object) -> None:
    out = ok(fleetctl(lab, "core-01", "start", str(HELLO)))
    target = host_of(lab, out.split()[-1])
    pid = main_pid(lab, target, "hello.service")
    _, members = lab.status()
    pids = [m.pid for m in members if m.pid]
    assert len(pids) == len(members) >= 3
    for member in pids:
        os.kill(member, signal.SIGSTOP)
    try:
        # Longer than fleetd's request timeout and several keepalive rounds.
        time.sleep(8)
        for host in lab.hosts:
            state = lab.exec(host.name, ["systemctl", "is-active", "fleet.service"]).stdout
            assert state.strip() == "active", f"fleetd on {host.name}: {state}"
        assert main_pid(lab, target, "hello.service") == pid
    finally:
        for member in pids:
            os.kill(member, signal.SIGCONT)
    # etcd is back: the same unit still runs, untouched, and the cluster works.
    eventually(
        lambda: fleetctl(lab, "core-02", "list-units", "--no-legend").returncode == 0,
        timeout=30,
        what="fleetctl answering again",
    )
    assert rows(ok(fleetctl(lab, "core-02", "list-units")))[0][2:] == ["active", "running"]
    assert main_pid(lab, target, "hello.service") == pid
    ok(fleetctl(lab, "core-02", "stop", "hello.service"))
    out = ok(fleetctl(lab, "core-03", "start", "hello.service"))
    assert "launched on" in out
