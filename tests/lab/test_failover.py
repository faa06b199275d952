"""fleetctl survives the loss of the member it talks to (issue 11), on a lab of its own.

Lab ``flfailover`` (172.17.52.0/24): 3 hosts, agent_ttl 5 s. fleetctl runs on
this machine with what ``fleetlab env`` gave while every host was up (a user's
``eval "$(fleetlab env)"``): FLEETCTL_ENDPOINT lists the three APIs in host
order. Then hosts crash (``host_stop(kill=True)``), the first ones in the list
first, so that every command has to get past dead members.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from fleetpy.lab.state import FLEET_API_PORT
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import SLEEPER, ok, table, write_units

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

NAME, SUBNET = "flfailover", "172.17.52.0/24"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with own_lab(NAME, SUBNET, hosts=3, etcd_members=1,
                 fleet_env={"FLEET_AGENT_TTL": "5"}) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def user_env(lab: Lab) -> dict[str, str]:
    """`fleetlab env` while every host runs: every host's API, in host order."""
    env = lab.env()
    assert env["FLEETCTL_ENDPOINT"] == ",".join(
        f"http://{h.ip}:{FLEET_API_PORT}" for h in lab.hosts)
    return env


def fleetctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["fleetctl", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60, check=False)


def timed(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = fleetctl(env, *args)
    elapsed = time.monotonic() - started
    print(f"fleetctl {' '.join(args)}: exit {done.returncode} in {elapsed:.2f}s")
    return done, elapsed


def wait_through(lab: Lab, env: dict[str, str], unit: str, fault: Callable[[], None],
                 metadata: str) -> subprocess.CompletedProcess[str]:
    """``fleetctl start UNIT`` (whose unit asks for ``metadata``) from this machine; once
    it waits for a machine, ``fault()``; then core-03 gets ``metadata``."""
    last = lab.hosts[-1]
    waiting = subprocess.Popen(["fleetctl", "start", unit], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        assert waiting.stderr is not None
        said = waiting.stderr.readline()  # the wait has begun
        assert said.startswith(f"Unit {Path(unit).name} is waiting to be scheduled: "), said
        started = time.monotonic()
        fault()
        # from inside core-03 (its own socket): only the waiting fleetctl must fail over
        ok(lab.exec(last.name, ["fleetctl", "set-metadata", last.machine_id, metadata]))
        out, err = waiting.communicate(timeout=60)
        print(f"{Path(unit).name}: launched {time.monotonic() - started:.1f}s after the fault")
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    return subprocess.CompletedProcess(waiting.args, waiting.returncode, out, err)


def test_a_blocking_start_outlives_a_frozen_member(lab: Lab, user_env: dict[str, str],
                                                   tmp_path: Path) -> None:
    """The member fleetctl waits on freezes (no FIN, no RST: only keepalive pings
    tell): the wait goes on through the next member."""
    first, _, last = lab.hosts
    (unit,) = write_units(tmp_path, {"cold.service": "MachineMetadata=cold=yes"})
    try:
        done = wait_through(lab, user_env, unit, lambda: lab.pause(first.name), "cold=yes")
    finally:
        lab.resume(first.name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(
        f"Unit cold.service launched on {last.machine_id[:8]}.../{last.ip}\n")


def test_a_blocking_start_outlives_its_member(lab: Lab, user_env: dict[str, str],
                                              tmp_path: Path) -> None:
    """fleetctl waits on core-01's API (first in the list) for a unit no machine can
    take yet; core-01 crashes while it waits; then core-03 gets the metadata the
    unit asks for: the wait goes on through core-02 and ends as usual."""
    first, _, last = lab.hosts
    (unit,) = write_units(tmp_path, {"late.service": "MachineMetadata=role=late"})
    done = wait_through(lab, user_env, unit, lambda: lab.host_stop(first.name, kill=True),
                        "role=late")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(
        f"Unit late.service launched on {last.machine_id[:8]}.../{last.ip}\n")


def test_one_host_left_answers_and_starts_a_unit(
    lab: Lab, user_env: dict[str, str], tmp_path: Path
) -> None:
    *dead, last = lab.hosts
    for host in dead:
        if host.pid is not None:
            lab.host_stop(host.name, kill=True)

    machines, _ = timed(user_env, "list-machines", "--no-legend", "--full")
    assert last.machine_id in [row[0] for row in table(ok(machines))]
    units, _ = timed(user_env, "list-units", "--no-legend")
    assert ["late.service", f"{last.machine_id[:8]}.../{last.ip}", "active", "running"] in (
        table(ok(units)))

    unit = tmp_path / "hello.service"
    unit.write_text(SLEEPER.format(name="hello"))
    started, _ = timed(user_env, "start", str(unit))
    assert f"Unit hello.service launched on {last.machine_id[:8]}.../{last.ip}" in ok(started)
    state = lab.exec(last.name, ["systemctl", "is-active", "hello.service"])
    assert state.stdout.strip() == "active"


def test_none_left_the_error_names_every_endpoint(lab: Lab, user_env: dict[str, str]) -> None:
    for host in lab.hosts:
        if host.pid is not None:
            lab.host_stop(host.name, kill=True)
    done, elapsed = timed(user_env, "list-units")
    assert done.returncode == 1
    said = done.stderr
    tried = ", ".join(f"http://{h.ip}:{FLEET_API_PORT}" for h in lab.hosts)
    assert said.startswith(f"Error: cannot reach the fleet API (tried {tried}): "), said
    assert elapsed < 30  # the request timeout (3 s), not a hang
