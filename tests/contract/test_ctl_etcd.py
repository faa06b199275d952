"""fleetctl against a real etcd (``--driver etcd``, and the API backed by etcd)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fleetpy.ctl.common import CtlEnv
from fleetpy.ctl.main import main
from fleetpy.registry.etcd import EtcdRegistry
from tests.fixtures.etcd import EtcdProcess
from tests.unit.test_ctl_support import Cluster

pytestmark = pytest.mark.etcd

HELLO = (Path(__file__).resolve().parents[2] / "unit-files/static/hello.service").read_text()
ON_M1 = "4f4a4289.../172.17.8.101"


def fleetctl(etcd: EtcdProcess, prefix: str, *args: str) -> Result:
    argv = [
        "--driver",
        "etcd",
        "--etcd-endpoints",
        etcd.endpoint,
        "--etcd-key-prefix",
        prefix,
        *args,
    ]
    return CliRunner().invoke(main, argv, obj=CtlEnv())


@pytest.fixture
def unit_file(tmp_path: Path) -> str:
    path = tmp_path / "hello.service"
    path.write_text(HELLO)
    return str(path)


@pytest.fixture
def cluster(etcd_server: EtcdProcess, etcd_prefix: str) -> Iterator[Cluster]:
    """The fake engine/agent, writing to the same etcd and prefix."""
    with Cluster(registry=lambda: EtcdRegistry(etcd_server.endpoint, etcd_prefix)) as c:
        yield c


def test_submit_list_cat_destroy(
    etcd_server: EtcdProcess, etcd_prefix: str, unit_file: str
) -> None:
    r = fleetctl(etcd_server, etcd_prefix, "submit", unit_file)
    assert (r.exit_code, r.stdout) == (0, "Unit hello.service inactive\n"), r.output
    r = fleetctl(etcd_server, etcd_prefix, "list-unit-files")
    assert r.exit_code == 0
    lines = [line.expandtabs(8) for line in r.stdout.splitlines()]
    assert lines[0] == "UNIT            HASH    DSTATE          STATE           TARGET"
    assert lines[1].startswith("hello.service   ")
    assert lines[1].endswith(" inactive        inactive        -")
    assert fleetctl(etcd_server, etcd_prefix, "cat", "hello.service").stdout == HELLO
    r = fleetctl(etcd_server, etcd_prefix, "destroy", "hello.service")
    assert (r.exit_code, r.stdout) == (0, "Destroyed hello.service\n")
    r = fleetctl(etcd_server, etcd_prefix, "list-unit-files", "--no-legend")
    assert (r.exit_code, r.stdout) == (0, "")


def test_bad_input_leaves_etcd_unchanged(
    etcd_server: EtcdProcess, etcd_prefix: str, unit_file: str, tmp_path: Path
) -> None:
    assert fleetctl(etcd_server, etcd_prefix, "submit", unit_file).exit_code == 0
    (tmp_path / "bad.service").write_text("no section\n")
    before = etcd_server.revision()
    for args, message in [
        (("submit", str(tmp_path / "bad.service")), 'invalid unit file "bad.service"'),
        (("stop", "hello.service"), "Unable to stop unit hello.service in state inactive"),
        (("destroy", "nope.service"), "Unit nope.service not found"),
        (("start", "a/.."), 'invalid unit name ".."'),
    ]:
        r = fleetctl(etcd_server, etcd_prefix, *args)
        assert r.exit_code == 1 and message in r.stderr, (args, r.output)
    assert etcd_server.revision() == before


def test_blocking_start_stop_on_etcd(
    cluster: Cluster, etcd_server: EtcdProcess, etcd_prefix: str, unit_file: str
) -> None:
    r = fleetctl(etcd_server, etcd_prefix, "start", unit_file)
    assert r.stdout == (f"Unit hello.service inactive\nUnit hello.service launched on {ON_M1}\n"), (
        r.output
    )
    r = fleetctl(etcd_server, etcd_prefix, "list-units")
    assert r.stdout.splitlines()[1].expandtabs(8) == (
        f"hello.service   {ON_M1}        active  running"
    )
    r = fleetctl(etcd_server, etcd_prefix, "stop", "hello.service")
    assert r.stdout == f"Unit hello.service loaded on {ON_M1}\n"
    r = fleetctl(etcd_server, etcd_prefix, "destroy", "hello.service")
    assert r.stdout == "Destroyed hello.service\n"
    assert cluster.states() == []


def test_api_backed_by_etcd(cluster: Cluster, unit_file: str) -> None:
    short = Path(tempfile.mkdtemp(prefix="fctl", dir="/tmp"))
    try:
        api = cluster.start_api(str(short / "fleet.sock"))
        r = cluster.ctl("load", unit_file, api=api)
        assert r.stdout == (
            f"Unit hello.service inactive\nUnit hello.service loaded on {ON_M1}\n"
        ), r.output
        r = cluster.ctl("start", "hello.service", api=api)
        assert r.stdout == f"Unit hello.service launched on {ON_M1}\n"
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_unreachable_etcd_names_the_endpoints(etcd_prefix: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [
        "--driver",
        "etcd",
        "--etcd-endpoints",
        f"http://127.0.0.1:{port}",
        "--request-timeout",
        "0.5",
        "list-units",
    ]
    r = CliRunner().invoke(main, argv, obj=CtlEnv())
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: cannot reach etcd (tried http://127.0.0.1:{port})")
