"""fleetctl on a lab, from this machine (after `fleetlab env`) or inside a host, and waits."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from fleetpy.lab import Lab
from fleetpy.lab.state import FLEET_API_PORT
from fleetpy.registry.base import DEFAULT_PREFIX

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
UNIT_FILES = ROOT / "unit-files"
SLEEPER = "[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/sleep infinity\n"


_VIA: list[str] = []  # a host whose API fleetctl uses from this machine (see ``via``)


@contextlib.contextmanager
def via(lab: Lab, host: str) -> Iterator[None]:
    """fleetctl from this machine talks to ``host``'s fleetd (``fleetlab env`` picks the first)."""
    _VIA.append(next(h.ip for h in lab.hosts if h.name == host))
    try:
        yield
    finally:
        _VIA.pop()


def fleetctl(lab: Lab, *args: str, host: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """fleetctl ARGS from this machine (``fleetlab env``), or inside ``host``."""
    if host is not None:
        return lab.exec(host, ["fleetctl", *args], timeout=timeout)
    env = {**os.environ, **lab.env()}
    if _VIA:
        env["FLEETCTL_ENDPOINT"] = f"http://{_VIA[-1]}:{FLEET_API_PORT}"
    return subprocess.run(["fleetctl", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def etcdctl(lab: Lab, *args: str) -> str:
    """etcdctl ARGS against the lab's etcd (``fleetlab env``); its output, or fail."""
    env = {**os.environ, **lab.env()}
    done = subprocess.run(["etcdctl", *args], capture_output=True, text=True, env=env,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout


def eventually(check: Callable[[], T | None], timeout: float = 15.0, what: str = "",
               every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}: "
                         f"last {last!r}")


def table(output: str) -> list[list[str]]:
    """Rows of a --no-legend table, split on whitespace."""
    return [line.split() for line in output.strip().splitlines() if line.strip()]


def host_by_ip(lab: Lab) -> dict[str, str]:
    return {h.ip: h.name for h in lab.hosts}


def placement(lab: Lab) -> dict[str, tuple[str, str]]:
    """unit -> (host name, active state), from fleetctl list-units (every machine's report)."""
    ips = host_by_ip(lab)
    out = ok(fleetctl(lab, "list-units", "--no-legend", "--full", "--fields=unit,machine,active"))
    found: dict[str, tuple[str, str]] = {}
    for unit, machine, active in table(out):
        found[unit] = (ips.get(machine.rsplit("/", 1)[-1], machine), active)
    return found


def running(lab: Lab, names: list[str]) -> dict[str, str] | None:
    """unit -> host when every one of ``names`` reports active, else None."""
    now = placement(lab)
    if all(now.get(n, ("", ""))[1] == "active" for n in names):
        return {n: now[n][0] for n in names}
    return None


def unit_files(lab: Lab, fields: str = "unit,dstate,state,target") -> dict[str, list[str]]:
    out = ok(fleetctl(lab, "list-unit-files", "--no-legend", "--full", f"--fields={fields}"))
    return {row[0]: row[1:] for row in table(out)}


def reasons(lab: Lab) -> dict[str, str]:
    """unit -> the engine's reason, for units waiting for a machine."""
    import json

    out = ok(fleetctl(lab, "list-unit-files", "--output=json", "--fields=unit,state,reason"))
    return {r["unit"]: r["reason"] for r in json.loads(out) if r["state"] == "waiting"}


def waiting(lab: Lab, count: int) -> dict[str, str] | None:
    """``reasons`` once exactly ``count`` units wait, else None."""
    found = reasons(lab)
    return found if len(found) == count else None


def write_units(directory: Path, units: dict[str, str]) -> list[str]:
    """Write unit files (name -> [X-Fleet] lines) running ``sleep``; return their paths."""
    paths = []
    for name, xfleet in units.items():
        text = SLEEPER.format(name=name)
        if xfleet:
            text += "\n[X-Fleet]\n" + xfleet.strip() + "\n"
        path = directory / name
        path.write_text(text)
        paths.append(str(path))
    return paths


def destroy_all(lab: Lab) -> None:
    """Destroy every unit in the cluster (waiting until no machine reports them)."""
    names = ok(fleetctl(lab, "list-unit-files", "--no-legend", "--fields=unit")).split()
    if names:
        ok(fleetctl(lab, "destroy", *names))


def active_on(lab: Lab, host: str, unit: str) -> str:
    """systemd's ActiveState of ``unit`` inside ``host`` ("inactive" when unknown)."""
    return lab.exec(host, ["systemctl", "is-active", unit]).stdout.strip()


def systemd_units(lab: Lab, host: str, units: list[str]) -> dict[str, tuple[str, str]]:
    """unit -> (ActiveState, InvocationID), from systemd in ``host`` (one call).

    The InvocationID changes on every start of a unit: equal before and after
    means systemd neither stopped nor restarted it in between.
    """
    out = ok(lab.exec(host, ["systemctl", "show", "-p", "Id", "-p", "ActiveState",
                             "-p", "InvocationID", "--", *units]))
    found = {}
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        found[props["Id"]] = (props["ActiveState"], props["InvocationID"])
    return found


def key_revision(lab: Lab, key: str) -> int:
    """The etcd mod_revision of ``key`` under fleetd's prefix (0 when absent)."""
    out = etcdctl(lab, "get", "-w", "json", DEFAULT_PREFIX + key)
    kvs = json.loads(out).get("kvs", [])
    return int(kvs[0]["mod_revision"]) if kvs else 0


def restart_fleetd(lab: Lab, host: str, how: str, units: list[str]) -> None:
    """Restart fleetd in ``host`` and wait until the new one has reconciled.

    ``how``: ``kill`` (kill -9; systemd starts it again, Restart=always) or
    ``restart`` (``systemctl restart fleet.service``, a graceful stop first).
    Returns once the new fleetd re-registered the machine (its record
    rewritten on the adopted lease) and then reported every one of ``units``
    (which it does on its first reconcile pass): whatever a new fleetd does to
    units on starting, it has done by then. No fixed sleep.
    """
    machine = next(h.machine_id for h in lab.hosts if h.name == host)
    record = f"machines/{machine}"
    states = [f"states/{machine}/{u}" for u in units]
    before = {k: key_revision(lab, k) for k in [record, *states]}
    assert all(before.values()), f"not registered/reported before the restart: {before}"
    pid = ok(lab.exec(host, ["systemctl", "show", "-p", "MainPID", "--value",
                             "fleet.service"])).strip()
    if how == "kill":
        ok(lab.exec(host, ["systemctl", "kill", "--signal=KILL", "fleet.service"]))
    else:
        assert how == "restart", how
        ok(lab.exec(host, ["systemctl", "restart", "fleet.service"]))

    def reconciled() -> bool:
        registered = key_revision(lab, record)
        return registered > before[record] and all(
            key_revision(lab, k) > registered for k in states)

    eventually(reconciled, timeout=30, every=0.3,
               what=f"the new fleetd in {host} re-registered and reporting {units}")
    now = ok(lab.exec(host, ["systemctl", "show", "-p", "MainPID", "--value",
                             "fleet.service"])).strip()
    assert now not in ("0", pid), (pid, now)

def active_on_hosts(lab: Lab, names: list[str]) -> dict[str, set[str]]:
    """unit -> the hosts whose systemd says it is active (one systemctl per host)."""
    found: dict[str, set[str]] = {n: set() for n in names}
    for host in lab.hosts:
        out = lab.exec(host.name, ["systemctl", "show", "-p", "Id", "-p", "ActiveState",
                                   "--", *names]).stdout
        for block in out.strip().split("\n\n"):
            props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            if props.get("ActiveState") == "active":
                found[props["Id"]].add(host.name)
    return found
