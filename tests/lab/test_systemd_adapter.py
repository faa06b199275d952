"""The UnitManager contract on the fake and on a real systemd in a lab host.

The same scenario (tests/lab/systemd_driver.py ``contract``) runs in-process on
FakeUnitManager and, for the real DbusUnitManager, inside a lab host (the
adapter runs inside fleetd, which runs inside a host), driven by
``lab.exec(host, [python, systemd_driver.py, "contract", ...])``; it prints
JSON that ``check_contract`` asserts on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fleetpy.lab import Lab
from fleetpy.systemd import FakeUnitManager
from tests.lab.systemd_driver import UNIT, contract

DRIVER = Path(__file__).resolve().with_name("systemd_driver.py")
SHA1 = hashlib.sha1(UNIT.encode()).hexdigest()
# The event loop's longest stall allowed while a call hangs: a loop blocked by the
# call would stall for the call timeout (1 s and more here) or the hang itself; a
# loaded 2-core machine delays a 10 ms tick by far less.
STALL = 0.5
# A state change arrives by D-Bus signal within this of systemd's own timestamp
# (the figure, a few ms, is bench's: bench/systemd_bench.py); without the
# signal it would not arrive at all (wait_for_state times out).
SIGNAL_LATENCY = 0.5


def check_contract(r: dict[str, Any], p: str) -> None:
    """What both implementations must do (p: the unit name prefix)."""
    a, gone, never = f"{p}-a.service", f"{p}-gone.service", f"{p}-never.service"
    assert r["files"] == {a: SHA1}
    assert r["after_reload"] == {a: ["loaded", "inactive", "dead"]}
    assert r["start_call_s"] < 1.0  # returns once the job is queued
    assert r["start_changes"][-1] == ["loaded", "active", "running"]
    assert r["running"] == {
        a: ["loaded", "active", "running"],
        never: ["not-found", "inactive", "dead"],
    }
    # closing the manager ends its streams; reconnecting leaves the unit running
    assert r["closed_stream_ends"] is True
    assert r["after_restart"] == {a: ["loaded", "active", "running"]}
    assert r["files_after_restart"] == {a: SHA1}
    assert r["stop_changes"][-1] == ["loaded", "inactive", "dead"]
    # stopping a unit systemd forgot (or never knew) is not an error
    assert r["gone_status"] == {gone: ["not-found", "inactive", "dead"]}
    assert r["stop_errors"] == []
    assert r["start_never"].startswith("SystemdError:") and "not found" in r["start_never"]
    assert r["files_after_remove"] == {}
    assert r["removed_status"] == {a: ["not-found", "inactive", "dead"]}
    # a hung call times out; the event loop kept ticking; the manager recovers
    assert "timed out" in r["hang"]
    assert r["hang_max_gap_s"] < STALL, r["hang_max_gap_s"]
    assert r["hang_ticks"] > 20
    assert r["after_hang"] == {a: ["loaded", "active", "running"]}


def run_in_host(lab: Lab, *args: str) -> tuple[dict[str, Any], str]:
    host = lab.hosts[0].name
    done = lab.exec(host, [sys.executable, str(DRIVER), *args], timeout=90)
    assert done.returncode == 0, f"driver failed ({done.returncode}):\n{done.stderr}"
    return json.loads(done.stdout), done.stderr


def test_contract_on_fake() -> None:
    fake = FakeUnitManager(call_timeout=1.0)  # longer than STALL
    # a fleetd restart on the same systemd: the same fake, started again
    r = asyncio.run(contract(lambda: fake, "fake", real=False))
    check_contract(r, "fake")


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_contract_on_real_systemd_private_socket(lab: Lab) -> None:
    r, log = run_in_host(lab, "contract", "sdtest")
    check_contract(r, "sdtest")
    # linked into /run/systemd/system from /run/fleet/units
    assert r["unit_file_state"] == "linked-runtime"
    assert (
        "Loaded: loaded (/run/systemd/system/sdtest-a.service; linked-runtime;" in r["status_text"]
    )
    # the state arrived by signal, soon after systemd's change
    assert 0 <= r["start_latency_s"] < SIGNAL_LATENCY, r["start_latency_s"]
    assert r["stop_after_call_s"] < 1.0
    # the stops of forgotten units went through systemd's NoSuchUnit path
    assert "stop sdtest-gone.service: systemd does not know it" in log
    assert "stop sdtest-never.service: systemd does not know it" in log
    # the hung worker was killed, restarted, and re-emitted the watched units' state
    assert "killing worker" in log and "re-emitting the status" in log
    assert r["resync_changes"] == [["loaded", "active", "running"]]


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_contract_on_real_systemd_system_bus(lab: Lab) -> None:
    """The same over the host's dbus-daemon (needs Subscribe(), which the worker sends)."""
    r, _ = run_in_host(lab, "contract", "sdbus", "system-bus")
    check_contract(r, "sdbus")
    assert r["unit_file_state"] == "linked-runtime"
    assert 0 <= r["start_latency_s"] < SIGNAL_LATENCY, r["start_latency_s"]


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_systemd_reexec_restarts_the_worker_and_leaves_units_alone(lab: Lab) -> None:
    r, log = run_in_host(lab, "reexec", "sdrx")
    assert "D-Bus connection to systemd lost" in log
    assert r["restarts"] >= 1
    assert r["resync"] == [["loaded", "active", "running"]]
    assert r["status"] == {"sdrx-reexec.service": ["loaded", "active", "running"]}
    assert r["same_pid"] is True
    assert r["stopped"] == ["loaded", "inactive", "dead"]


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_frozen_systemd_costs_timeouts_not_a_stalled_loop(lab: Lab) -> None:
    """SIGSTOP the host's systemd for 3 s: calls time out (1 s each), the event loop
    never stalls, and calls work again once systemd is continued."""
    host = lab.hosts[0]
    assert host.pid is not None
    argv, env = lab.command(host.name, [sys.executable, str(DRIVER), "freeze", "sdfz"])
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.kill(host.pid, signal.SIGSTOP)
        time.sleep(3)
    finally:
        os.kill(host.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    r = json.loads(out)
    assert r["errors"] and all("timed out after 1s" in e for e in r["errors"])
    assert r["status"] == {"sdfz-freeze.service": ["loaded", "inactive", "dead"]}
    assert r["max_gap_s"] < STALL, r["max_gap_s"]
    assert 2.5 < r["recovered_after_s"] < 10
    assert r["restarts"] >= 1
