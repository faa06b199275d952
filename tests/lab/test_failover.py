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
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from fleetpy.lab.state import FLEET_API_PORT
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import SLEEPER, ok, table

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


def test_one_host_left_answers_and_starts_a_unit(
    lab: Lab, user_env: dict[str, str], tmp_path: Path
) -> None:
    first, second, last = lab.hosts
    assert all(h.pid is not None for h in lab.hosts)
    lab.host_stop(first.name, kill=True)
    lab.host_stop(second.name, kill=True)

    machines, _ = timed(user_env, "list-machines", "--no-legend", "--full")
    assert last.machine_id in [row[0] for row in table(ok(machines))]
    units, _ = timed(user_env, "list-units")
    assert ok(units).split() == ["UNIT", "MACHINE", "ACTIVE", "SUB"]

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
