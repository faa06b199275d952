"""fleetctl's quick path (no click: fleetpy.ctl.quick) against a real etcd, beside click.

The same commands through the console script's entry point (the quick path)
and through the click group, each in a new process, on a registry in a real
etcd (``--driver etcd``, and the Fleet API served from that registry): the
same bytes on stdout and stderr and the same status. The unit commands run on
two units (one per path), so the outputs differ by the unit's name only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.model.types import UnitState
from fleetpy.registry.etcd import EtcdRegistry
from tests.fixtures.etcd import EtcdProcess
from tests.unit.test_ctl_support import M1, M2, Cluster

pytestmark = pytest.mark.etcd

RUN = "from fleetpy.ctl.main import run\nrun()\n"
CLICK = ("import sys\nfrom fleetpy.ctl.cli import main\n"
         "main(sys.argv[1:], prog_name='fleetctl')\n")


@pytest.fixture
def cluster(etcd_server: EtcdProcess, etcd_prefix: str) -> Iterator[Cluster]:
    """The fake engine/agent on the etcd registry, 40 units reported running."""
    make = lambda: EtcdRegistry(etcd_server.endpoint, etcd_prefix)  # noqa: E731
    with Cluster(machines=(M1, M2), registry=make) as c:
        c.report(*[UnitState(f"r{i:02}.service", (M1, M2)[i % 2].id, "loaded", "active",
                             "running", f"{i:040x}") for i in range(40)])
        yield c


def fleetctl(code: str, argv: list[str], env: dict[str, str],
             cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-X", "importtime", "-c", code, *argv],
                          capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", **env})


def same(fast: subprocess.CompletedProcess[str], slow: subprocess.CompletedProcess[str],
         swap: tuple[str, str] = ("", "")) -> None:
    imported = {line.split("|")[-1].strip() for line in fast.stderr.splitlines()
                if line.startswith("import time:")}
    assert "click" not in imported and "grpc" in imported  # the quick path, talking
    fast_err = "".join(line + "\n" for line in fast.stderr.splitlines()
                       if not line.startswith("import time:"))
    slow_err = "".join(line + "\n" for line in slow.stderr.splitlines()
                       if not line.startswith("import time:"))
    a, b = swap
    assert (fast.returncode, fast.stdout.replace(a, b), fast_err.replace(a, b)) == (
        slow.returncode, slow.stdout, slow_err)


@pytest.mark.parametrize("driver", ["etcd", "api"])
def test_quick_and_click_say_the_same_on_etcd(
    cluster: Cluster, etcd_server: EtcdProcess, etcd_prefix: str, tmp_path: Path, driver: str
) -> None:
    short = Path(tempfile.mkdtemp(prefix="fqe", dir="/tmp"))
    try:
        if driver == "etcd":
            env = {"FLEETCTL_DRIVER": "etcd", "FLEETCTL_ETCD_ENDPOINTS": etcd_server.endpoint,
                   "FLEETCTL_ETCD_KEY_PREFIX": etcd_prefix}
        else:
            env = {"FLEETCTL_ENDPOINT": cluster.start_api(str(short / "fleet.sock"))}
        for name in ("fast", "slow"):
            (tmp_path / f"{name}.service").write_text("[Service]\nExecStart=/bin/sleep 9\n")
        for argv in (["list-units"], ["list-units", "--full", "-o", "json"],
                     ["list-machines", "--fields", "machine,ip,metadata,state"],
                     ["list-unit-files"]):
            same(fleetctl(RUN, argv, env, tmp_path), fleetctl(CLICK, argv, env, tmp_path))
        for step in (["start", "{}.service"], ["stop", "--no-block", "{}.service"],
                     ["destroy", "{}.service"], ["stop", "{}.service"]):
            fast = fleetctl(RUN, [a.format("fast") for a in step], env, tmp_path)
            slow = fleetctl(CLICK, [a.format("slow") for a in step], env, tmp_path)
            same(fast, slow, ("fast", "slow"))
        assert "Unit fast.service not found" in fast.stderr and fast.returncode == 1
    finally:
        shutil.rmtree(short, ignore_errors=True)
