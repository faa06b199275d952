"""fleet's meaning of "loaded", starts that fail at once, and stops systemd refuses (issue 12).

Lab ``flstate`` (172.17.43.0/24): one host, one etcd member, fleetctl from this
machine. Every unit below runs on core-01; units systemd starts on its own
(a Requires= of a launched unit, socket and path activation) must not be
stopped by fleetd, a restarted fleetd must leave every unit alone, a
blocking start of a unit that fails at once must say so every time, and a
stop systemd refuses must be reported, not taken for a success.

A "pass" below is one reconcile pass of the agent, forced by loading a unit
and awaiting its report: fleetd acts on units on such passes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from tests.lab.conftest import fresh_lab, require_root, session_lock
from tests.lab.fleet_helpers import (
    active_on,
    etcdctl,
    eventually,
    fleetctl,
    ok,
    placement,
    restart_fleetd,
    systemd_units,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

HOST = "core-01"
SLEEP = "[Service]\nExecStart=/bin/sleep infinity\n"
ECHO_PORT = 7777
ECHO_SERVER = (  # Accept=no: the service gets the listening socket as fd 3
    "import socket,itertools; s=socket.socket(fileno=3); "
    "[(lambda c: (c.sendall(c.recv(64)), c.close()))(s.accept()[0]) for _ in itertools.count()]"
)
ECHO_CLIENT = (
    f"import socket; c=socket.create_connection(('127.0.0.1',{ECHO_PORT}),5); "
    "c.sendall(b'ping'); print(c.recv(64).decode())"
)
UNITS = {
    "db.service": SLEEP,
    "app.service": "[Unit]\nRequires=db.service\nAfter=db.service\n\n" + SLEEP
    + "\n[X-Fleet]\nMachineOf=db.service\n",
    "echo.socket": f"[Socket]\nListenStream=127.0.0.1:{ECHO_PORT}\n",
    "echo.service": f'[Service]\nExecStart=/usr/bin/python3 -c "{ECHO_SERVER}"\n',
    "p.path": "[Path]\nPathExists=/run/flstate-trigger\nUnit=p.service\n",
    "p.service": SLEEP,
    "a.service": SLEEP,
    "false.service": "[Service]\nExecStart=/bin/false\n",
    "once.service": "[Service]\nType=oneshot\n"
    "ExecStart=/bin/sh -c 'echo ran >> /run/flstate-once'\n",
    "r.service": "[Unit]\nRefuseManualStop=yes\n\n" + SLEEP,
}
_ticks = itertools.count(1)
_DIR: list[Path] = []  # where the module's unit files are


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_root()
    directory = tmp_path_factory.mktemp("units")
    for name, text in UNITS.items():
        (directory / name).write_text(text)
    _DIR[:] = [directory]
    with session_lock("flstate"):
        the_lab = fresh_lab("flstate", "172.17.43.0/24")
        the_lab.up(hosts=1, etcd_members=1)
        try:
            eventually(lambda: fleetctl(the_lab, "list-machines", "--no-legend").stdout.strip(),
                       timeout=30, what="fleetd registered")
            yield the_lab
        finally:
            the_lab.down()


def unit(lab: Lab, name: str) -> str:
    return str(_DIR[0] / name)


def run(lab: Lab, *argv: str) -> str:
    return ok(lab.exec(HOST, list(argv)))


def main_pid(lab: Lab, name: str) -> int:
    return int(run(lab, "systemctl", "show", "-p", "MainPID", "--value", name).strip())


def force_pass(lab: Lab, tmp_path: Path) -> None:
    """Make the agent run a reconcile pass (load a new unit) and await its report."""
    tick = tmp_path / f"tick{next(_ticks)}.service"
    tick.write_text(SLEEP)
    assert "loaded on" in ok(fleetctl(lab, "load", str(tick)))


def fleet_state(lab: Lab) -> dict[str, dict[str, str]]:
    out = ok(fleetctl(lab, "list-unit-files", "--output=json", "--fields=unit,dstate,state,reason"))
    return {row["unit"]: row for row in json.loads(out)}


def test_units_systemd_starts_are_not_fleets_to_stop(lab: Lab, tmp_path: Path) -> None:
    # Requires=: app pulls in db, which fleet only loaded
    assert "loaded on" in ok(fleetctl(lab, "load", unit(lab, "db.service")))
    assert "launched on" in ok(fleetctl(lab, "start", unit(lab, "app.service")))
    eventually(lambda: active_on(lab, HOST, "db.service") == "active", what="db active")
    db = main_pid(lab, "db.service")
    # socket activation: echo.socket launched, echo.service loaded
    ok(fleetctl(lab, "load", unit(lab, "echo.service")))  # before the socket, or it refuses
    ok(fleetctl(lab, "start", unit(lab, "echo.socket")))
    assert run(lab, "/usr/bin/python3", "-c", ECHO_CLIENT).strip() == "ping"
    eventually(lambda: active_on(lab, HOST, "echo.service") == "active", what="echo active")
    echo = main_pid(lab, "echo.service")
    # a .path unit starts its service
    ok(fleetctl(lab, "load", unit(lab, "p.service")))
    ok(fleetctl(lab, "start", unit(lab, "p.path")))
    run(lab, "touch", "/run/flstate-trigger")
    eventually(lambda: active_on(lab, HOST, "p.service") == "active", what="p.service active")
    path_service = main_pid(lab, "p.service")

    force_pass(lab, tmp_path)
    force_pass(lab, tmp_path)
    assert main_pid(lab, "db.service") == db
    assert main_pid(lab, "echo.service") == echo
    assert main_pid(lab, "p.service") == path_service
    assert active_on(lab, HOST, "p.path") == "active"  # no stop/start fight, no start limit
    assert run(lab, "/usr/bin/python3", "-c", ECHO_CLIENT).strip() == "ping"
    assert main_pid(lab, "echo.service") == echo  # served by the same process
    now = placement(lab)
    for name in ("db.service", "echo.service", "p.service", "app.service"):
        assert now[name][1] == "active", (name, now)  # list-units: systemd's view
    states = fleet_state(lab)
    assert [states[n]["state"] for n in ("db.service", "echo.service", "p.service")] == [
        "loaded"] * 3  # list-unit-files: what fleet did
    assert states["app.service"]["state"] == "launched"


@pytest.mark.parametrize("how", ["kill", "restart"])
def test_restarted_fleetd_leaves_every_unit_alone(lab: Lab, how: str) -> None:
    """kill -9 or a graceful restart of fleetd: no unit stopped or restarted (same
    InvocationID), those fleet launched and those systemd started on its own alike,
    once the new fleetd has registered again and reconciled (awaited, not slept)."""
    ok(fleetctl(lab, "start", unit(lab, "a.service")))
    names = ["a.service", "app.service", "db.service", "echo.service", "echo.socket",
             "p.path", "p.service"]
    before = systemd_units(lab, HOST, names)
    assert all(state == "active" and invocation
               for state, invocation in before.values()), before
    restart_fleetd(lab, HOST, how, names)
    assert systemd_units(lab, HOST, names) == before


def test_blocking_start_of_a_unit_failing_at_once_fails_every_time(lab: Lab) -> None:
    pids = set()
    for _ in range(5):
        r = fleetctl(lab, "start", unit(lab, "false.service"), timeout=30)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "Unit false.service failed on" in r.stderr and "systemd says failed/failed" in \
            r.stderr, r.stderr
        assert "launched" not in r.stdout
        pids.add(run(lab, "systemctl", "show", "-p", "ExecMainPID", "--value", "false.service"))
    assert len(pids) == 5  # each start of the failed unit started it again
    assert fleet_state(lab)["false.service"]["state"] == "failed"
    # a oneshot that finished: says so, and a second start runs it again
    for runs in (1, 2):
        out = ok(fleetctl(lab, "start", unit(lab, "once.service"), timeout=30))
        assert "launched on" in out and "finished" in out, out
        assert run(lab, "cat", "/run/flstate-once").split() == ["ran"] * runs
    assert fleet_state(lab)["once.service"]["state"] == "finished"


def fleet_log(lab: Lab, since: str) -> list[str]:
    out = run(lab, "journalctl", "-u", "fleet.service", "--since", since, "-o", "cat",
              "--no-pager")
    return out.splitlines()


def test_a_stop_systemd_refuses_is_reported_and_retried_with_backoff(lab: Lab) -> None:
    ok(fleetctl(lab, "start", unit(lab, "r.service")))
    pid = main_pid(lab, "r.service")
    r = fleetctl(lab, "stop", "r.service")
    assert r.returncode != 0
    assert "r.service could not be stopped on" in r.stderr and "172.17.43." in r.stderr
    assert "Operation refused" in r.stderr, r.stderr
    assert "stop:" in fleet_state(lab)["r.service"]["reason"]
    assert placement(lab)["r.service"][1] == "active"

    since = run(lab, "date", "+%Y-%m-%d %H:%M:%S").strip()
    r = fleetctl(lab, "destroy", "r.service")
    assert r.returncode != 0 and "Destroyed" not in r.stdout
    assert "r.service could not be stopped and unloaded on" in r.stderr
    assert "Operation refused" in r.stderr and "172.17.43." in r.stderr, r.stderr
    time.sleep(6)  # what the agent does meanwhile: a few tries, backing off
    assert placement(lab)["r.service"][1] == "active"  # still visible, still running
    assert main_pid(lab, "r.service") == pid
    lines = fleet_log(lab, since)
    tries = [line for line in lines if "unload r.service failed" in line]
    reloads = [line for line in lines if ": daemon-reload -: " in line]
    assert 1 <= len(tries) <= 4, lines  # 1 s, 2 s, 4 s apart: not once a second
    assert reloads == [], reloads

    # once its process is gone, the next try removes it (the refused stop is moot)
    run(lab, "systemctl", "kill", "-s", "KILL", "r.service")
    eventually(lambda: "r.service" not in placement(lab), timeout=30, what="r.service gone")


def test_a_unit_systemd_cannot_load_is_not_loaded_in_a_loop(lab: Lab) -> None:
    """A file systemd refuses (no ExecStart=) put straight into etcd, past submit's checks."""
    contents = "[Unit]\nDescription=no ExecStart\n"
    record = {"contents": contents, "hash": hashlib.sha1(contents.encode()).hexdigest(),
              "desired": "launched"}
    since = run(lab, "date", "+%Y-%m-%d %H:%M:%S").strip()
    etcdctl(lab, "put", "/fleetpy/units/noexec.service", json.dumps(record))
    eventually(lambda: "cannot load" in fleet_state(lab).get("noexec.service", {}).get(
        "reason", ""), timeout=20, what="noexec.service's reason")
    reason = fleet_state(lab)["noexec.service"]["reason"]
    assert "load state bad-setting" in reason, reason
    time.sleep(4)  # what the agent does meanwhile: nothing more with it
    lines = fleet_log(lab, since)
    loads = [i for i, line in enumerate(lines) if "load noexec.service:" in line]
    assert len(loads) == 1, lines  # loaded once (one daemon-reload), not again and again
    assert not [line for line in lines if "start noexec.service" in line], lines
    ok(fleetctl(lab, "destroy", "noexec.service"))


def test_cleanup(lab: Lab) -> None:
    names = ok(fleetctl(lab, "list-unit-files", "--no-legend", "--fields=unit")).split()
    ok(fleetctl(lab, "destroy", *names))
    assert placement(lab) == {}
