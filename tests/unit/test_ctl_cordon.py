"""fleetctl cordon / uncordon and list-machines' STATE, with --driver etcd and through the API."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from fleetpy.model.cordon import MachineState
from tests.unit.test_ctl_support import M1, M2, Cluster


@pytest.fixture(params=["etcd", "api"])
def ctl(request: pytest.FixtureRequest) -> Iterator[tuple[Cluster, str | None]]:
    short = Path(tempfile.mkdtemp(prefix="fcord", dir="/tmp"))
    try:
        with Cluster(machines=(M1, M2), simulate=False) as cluster:
            api = cluster.start_api(str(short / "fleet.sock")) if request.param == "api" else None
            yield cluster, api
    finally:
        shutil.rmtree(short, ignore_errors=True)


def run(ctl: tuple[Cluster, str | None], *args: str) -> Result:
    cluster, api = ctl
    return cluster.ctl(*args, api=api)


def test_cordon_shows_in_list_machines_and_uncordon_clears_it(
    ctl: tuple[Cluster, str | None],
) -> None:
    cluster, _ = ctl
    plain = run(ctl, "list-machines", "--no-legend").stdout
    assert "ready" not in plain  # fleet's three columns while every machine is ready
    done = run(ctl, "cordon", "ca54", "--reason", "disk swap")
    assert (done.exit_code, done.stdout) == (0, "Machine ca541338.../172.17.8.102 cordoned\n")
    cordons = cluster.run(cluster.registry.list_cordons())
    assert list(cordons) == [M2.id] and cordons[M2.id].state == MachineState.CORDONED
    assert cordons[M2.id].reason == "disk swap" and "@" in cordons[M2.id].by
    table = run(ctl, "list-machines").stdout.splitlines()
    assert table[0].split() == ["MACHINE", "IP", "METADATA", "STATE"]
    assert table[1].split()[-1] == "ready" and table[2].split()[-1] == "cordoned"
    rows = json.loads(run(ctl, "list-machines", "-o", "json").stdout)
    assert [r["state"] for r in rows] == ["ready", "cordoned"]
    assert run(ctl, "list-machines", "--no-legend", "--fields", "state").stdout == (
        "ready\ncordoned\n")
    again = run(ctl, "cordon", "172.17.8.102")
    assert (again.exit_code, again.stdout) == (
        0, "Machine ca541338.../172.17.8.102 already cordoned\n")
    done = run(ctl, "uncordon", "ca541338...")  # as list-machines shows it
    assert (done.exit_code, done.stdout) == (0, "Machine ca541338.../172.17.8.102 uncordoned\n")
    assert cluster.run(cluster.registry.list_cordons()) == {}
    done = run(ctl, "uncordon", "ca54")
    assert done.stdout == "Machine ca541338.../172.17.8.102 was not cordoned\n"


def test_cordon_of_an_unknown_machine_fails_and_writes_nothing(
    ctl: tuple[Cluster, str | None],
) -> None:
    cluster, _ = ctl
    done = run(ctl, "cordon", "zz")
    assert done.exit_code == 1 and "no machine matches 'zz'" in done.stderr
    assert cluster.run(cluster.registry.list_cordons()) == {}


def test_drain_no_block_marks_the_machine_draining(ctl: tuple[Cluster, str | None]) -> None:
    cluster, _ = ctl
    done = run(ctl, "drain", "4f4a", "--no-block", "--stop-global")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("Machine 4f4a4289.../172.17.8.101 draining\n")
    cordon = cluster.run(cluster.registry.list_cordons())[M1.id]
    assert cordon.state == MachineState.DRAINING and cordon.stop_global
    assert run(ctl, "list-machines", "--no-legend", "--fields", "state").stdout == (
        "draining\nready\n")


@pytest.mark.parametrize("deadline", ["5x", "-1s", "1h5", "m"])
def test_drain_with_a_bad_deadline_fails_and_writes_nothing(
    ctl: tuple[Cluster, str | None], deadline: str
) -> None:
    cluster, _ = ctl
    done = run(ctl, "drain", "4f4a", "--deadline", deadline)
    assert done.exit_code == 1 and f"invalid duration {deadline!r}" in done.stderr
    assert cluster.run(cluster.registry.list_cordons()) == {}


def test_ctrl_c_leaves_the_machine_draining_and_says_so(tmp_path: Path) -> None:
    """A real fleetctl process, through the API, interrupted while it waits."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from fleetpy.model.types import ScheduledUnit, TargetState

    short = Path(tempfile.mkdtemp(prefix="fcint", dir="/tmp"))
    try:
        with Cluster(machines=(M1, M2), simulate=False) as cluster:
            api = cluster.start_api(str(short / "fleet.sock"))
            text = f"[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID={M1.id[:8]}\n"
            entry = ScheduledUnit("pinned.service", M1.id, TargetState.LAUNCHED, "h", text)
            cluster.run(cluster.registry.apply_schedule(cluster.token, [entry], []))
            proc = subprocess.Popen(
                [sys.executable, "-m", "fleetpy.ctl", "--endpoint", api, "drain", "4f4a",
                 "--deadline", "1h"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
            assert proc.stdout is not None
            seen = []
            for line in proc.stdout:  # blocks until fleetctl reports the pinned unit
                seen.append(line)
                if "cannot move" in line:
                    break
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            rest, errors = proc.communicate(timeout=20)
            assert proc.returncode == 130, (seen, rest, errors)
            assert ("Machine 4f4a4289.../172.17.8.101 stays draining (0 moved, 1 left): "
                    "fleetd carries the drain on; fleetctl drain 4f4a shows its progress, "
                    "fleetctl uncordon 4f4a ends it") in errors
            cordon = cluster.run(cluster.registry.list_cordons())[M1.id]
            assert cordon.state == MachineState.DRAINING
            # the deadline stays with the drain, for fleetd to enforce
            assert cordon.deadline is not None
            assert 3500 < cordon.deadline - time.time() <= 3600
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_drain_writes_its_pace_and_drain_again_changes_only_the_flags_given(
    ctl: tuple[Cluster, str | None],
) -> None:
    import time
    from dataclasses import replace

    cluster, _ = ctl
    done = run(ctl, "drain", "4f4a", "--no-block", "--max-parallel", "2", "--deadline", "90s")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[-1] == (
        "fleetd moves its units 2 MachineOf group(s) at a time "
        "(fleetctl list-machines, list-unit-files show progress)")
    assert done.stdout.count(" draining") == 1, done.stdout
    cordon = cluster.run(cluster.registry.list_cordons())[M1.id]
    assert cordon.max_parallel == 2 and cordon.deadline is not None
    assert 80 < cordon.deadline - time.time() <= 90
    # the engine carries it on meanwhile: its requests stay
    asked = replace(cordon, move=("a.service",))
    cluster.run(cluster.registry.put_cordon(asked))
    assert run(ctl, "drain", "4f4a", "--no-block").exit_code == 0
    assert cluster.run(cluster.registry.list_cordons())[M1.id] == asked
    assert run(ctl, "drain", "4f4a", "--no-block", "--max-parallel", "1").exit_code == 0
    assert cluster.run(cluster.registry.list_cordons())[M1.id] == replace(asked, max_parallel=1)
