"""fleetctl's command line: global flags, help, version, connection errors, startup."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fleetpy.ctl.common import CtlEnv
from fleetpy.ctl.main import main
from fleetpy.model.types import TargetState, UnitState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.base import Registry
from fleetpy.registry.memory import MemoryRegistry
from tests.unit.test_ctl_support import M1, Cluster

FLEETCTL = [sys.executable, "-m", "fleetpy.ctl"]


def invoke(*args: str, env: dict[str, str] | None = None, obj: CtlEnv | None = None) -> Result:
    return CliRunner().invoke(main, list(args), obj=obj or CtlEnv(), env=env)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_help_lists_fleets_commands() -> None:
    for r in (invoke(), invoke("--help"), invoke("help")):
        assert r.exit_code == 0
        for cmd in ("submit", "load", "start", "stop", "unload", "destroy", "restart", "cat",
                    "list-units", "list-unit-files", "list-machines", "version", "help"):
            assert f"  {cmd} " in r.stdout
        for flag in ("--endpoint", "--driver", "--etcd-key-prefix", "--request-timeout",
                     "FLEETCTL_ENDPOINT"):
            assert flag in r.stdout
    r = invoke("help", "start")
    assert r.exit_code == 0 and "--no-block" in r.stdout and "--block-attempts" in r.stdout


def test_version() -> None:
    for args in (("version",), ("--version",)):
        r = invoke(*args)
        assert r.exit_code == 0 and r.stdout.startswith("fleetctl version ")


def test_unknown_command_is_fleets_message() -> None:
    r = invoke("frobnicate")
    assert r.exit_code == 2
    assert r.stderr == ('fleetctl: unknown subcommand: "frobnicate"\n'
                        "Run 'fleetctl help' for usage.\n")


def test_api_unreachable_names_the_endpoint() -> None:
    r = invoke("--endpoint", "unix:///nonexistent/fleet.sock", "list-units")
    assert r.exit_code == 1
    assert r.stderr.startswith(
        "Error: cannot reach the fleet API at unix:///nonexistent/fleet.sock (is fleetd running?)")
    assert "Traceback" not in r.output
    port = closed_port()
    r = invoke("--endpoint", f"http://127.0.0.1:{port}", "list-unit-files")
    assert r.exit_code == 1 and f"http://127.0.0.1:{port}" in r.stderr


def test_malformed_endpoint() -> None:
    r = invoke("--endpoint", "unix://var/run/fleet.sock", "list-units")
    assert (r.exit_code, r.stderr) == (
        1, 'Error: Unable to initialize client: unable to connect to host "var" '
           'with scheme "unix"\n')
    r = invoke("--driver", "nope", "list-units")
    assert r.exit_code == 2 and "nope" in r.stderr


def test_etcd_unreachable_names_every_endpoint_tried() -> None:
    a, b = closed_port(), closed_port()
    endpoints = f"http://127.0.0.1:{a},http://127.0.0.1:{b}"
    r = invoke("--driver", "etcd", "--etcd-endpoints", endpoints, "--request-timeout", "0.5",
               "list-unit-files")
    assert r.exit_code == 1
    assert r.stderr.startswith(
        f"Error: cannot reach etcd (tried http://127.0.0.1:{a}, http://127.0.0.1:{b})")
    assert "Traceback" not in r.output


def test_driver_etcd_endpoints_from_flags_and_environment() -> None:
    seen: list[tuple[Sequence[str], str, float]] = []

    async def factory(endpoints: Sequence[str], prefix: str, timeout: float) -> Registry:
        seen.append((endpoints, prefix, timeout))
        return MemoryRegistry(prefix)

    env = CtlEnv(registry_factory=factory)
    # fleet: an --endpoint on an etcd port selects --driver etcd
    assert invoke("--endpoint", "http://10.0.0.1:2379", "list-units", obj=env).exit_code == 0
    r = invoke("list-units", obj=CtlEnv(registry_factory=factory), env={
        "FLEETCTL_DRIVER": "etcd", "FLEETCTL_ETCD_ENDPOINTS": "http://a:4001,http://b:4001",
        "FLEETCTL_ETCD_KEY_PREFIX": "/other/", "FLEETCTL_REQUEST_TIMEOUT": "7"})
    assert r.exit_code == 0, r.output
    assert seen == [(["http://10.0.0.1:2379"], "/fleetpy/", 3.0),
                    (["http://a:4001", "http://b:4001"], "/other/", 7.0)]
    # --driver etcd alone: etcd on this machine, as fleet's old default
    r = invoke("--driver", "etcd", "list-units", obj=CtlEnv(registry_factory=factory))
    assert r.exit_code == 0
    assert seen[-1][0] == ["http://127.0.0.1:2379", "http://127.0.0.1:4001"]


def test_help_and_version_do_not_import_grpc() -> None:
    code = ("import sys\nfrom fleetpy.ctl.main import main\n"
            "for argv in (['--help'], ['version'], ['help', 'start']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('grpc', 'google.protobuf', 'asyncio') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=30)


@pytest.fixture
def api_cluster() -> Iterator[tuple[Cluster, str]]:
    short = Path(tempfile.mkdtemp(prefix="fctl", dir="/tmp"))
    try:
        with Cluster() as cluster:
            yield cluster, cluster.start_api(str(short / "fleet.sock"))
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_real_process_against_the_api_and_its_wall_time(
    api_cluster: tuple[Cluster, str], tmp_path: Path
) -> None:
    cluster, api = api_cluster
    unit = tmp_path / "hello.service"
    unit.write_text("[Unit]\nDescription=My Service\n[Service]\nExecStart=/bin/true\n")
    env = {**os.environ, "FLEETCTL_ENDPOINT": api}
    p = subprocess.run([*FLEETCTL, "start", str(unit)], env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith("Unit hello.service launched on 4f4a4289.../172.17.8.101\n")

    cluster.pause()

    async def fill() -> None:
        for i in range(299):
            u = make_unit_file(f"app{i:03d}.service", f"[Service]\nExecStart=/bin/sleep {i}\n")
            await cluster.registry.create_unit(u, TargetState.LAUNCHED)
            state = UnitState(u.name, M1.id, "loaded", "active", "running", u.hash)
            await cluster.registry.put_unit_states([state], cluster.lease)

    cluster.run(fill(), timeout=60)
    best = 10.0
    for _ in range(3):
        t = time.perf_counter()
        p = subprocess.run([*FLEETCTL, "list-units"], env=env, capture_output=True, text=True,
                           timeout=30)
        best = min(best, time.perf_counter() - t)
        assert p.returncode == 0 and len(p.stdout.splitlines()) == 301
    print(f"fleetctl list-units, 300 units: {best * 1000:.0f} ms")
    # The speed figure (aim 150 ms) is bench's (bench/cluster_bench.py), on an idle
    # machine. Here the best of 3 cold runs (0.4-0.5 s with 7 load on 2 cores) only
    # has to show the command does not wait on something (a request timeout, 3 s).
    assert best < 2.0


def test_visible_wait_on_a_terminal_only(
    api_cluster: tuple[Cluster, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, api = api_cluster
    cluster.delay = 0.5  # long enough for the spinner to show
    unit = tmp_path / "hello.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    r = invoke("--endpoint", api, "load", str(unit))
    assert r.exit_code == 0 and r.stderr == ""  # not a terminal: no spinner
    monkeypatch.setattr("fleetpy.ctl.actions.stderr_is_tty", lambda: True)
    r = invoke("--endpoint", api, "start", "hello.service")
    assert r.exit_code == 0
    assert r.stdout == "Unit hello.service launched on 4f4a4289.../172.17.8.101\n"
    assert "Waiting for hello.service..." in r.stderr
    assert r.stderr.endswith("\r\033[K")  # the spinner line is cleared
