"""fleetctl imports what a command uses, and no more (its cold start is mostly imports).

Each case runs fleetctl in a new Python process and reads its ``sys.modules``
when the command is done: a module made eager again (imported at the top of a
module every command loads) shows up here. No timing: see docs/benchmarks.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.ctl import main as ctl_main
from fleetpy.model.types import UnitState
from tests.unit.test_ctl_support import M1, M2, Cluster

RUN = """
import json, sys
from fleetpy.ctl.main import main
try:
    main(sys.argv[1:], prog_name="fleetctl")
except SystemExit as e:
    code = e.code
print("\\n@@" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

ETCD_CLIENT = ("aetcd", "fleetpy.registry.etcd", "fleetpy.registry.etcd_client",
               "fleetpy.registry.store")
SSH_TLS = ("fleetpy.ctl.ssh", "fleetpy.ctl.tunnel", "fleetpy.ctl.locate", "fleetpy.tlscheck")
OTHER_COMMANDS = ("fleetpy.ctl.units", "fleetpy.ctl.actions", "fleetpy.ctl.wait",
                  "fleetpy.ctl.remote", "fleetpy.ctl.status", "fleetpy.ctl.machines",
                  "fleetpy.ctl.files")
UNIT_PARSING = ("fleetpy.model.unitfile", "fleetpy.model.xfleet", "fleetpy.model.metadata",
                "fleetpy.model.names", "fleetpy.registry.unreadable")


def fleetctl_modules(*argv: str, cwd: Path | None = None) -> tuple[int, set[str]]:
    """Run ``fleetctl ARGV`` in a new process: its exit code and the modules it imported."""
    p = subprocess.run([sys.executable, "-c", RUN, *argv], capture_output=True, text=True,
                       timeout=60, cwd=cwd)
    assert "@@" in p.stdout, p.stderr
    got = json.loads(p.stdout.rsplit("@@", 1)[1])
    return got["code"] or 0, set(got["modules"])


def present(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in modules]


@pytest.fixture
def api() -> Iterator[str]:
    short = Path(tempfile.mkdtemp(prefix="fimp", dir="/tmp"))
    try:
        with Cluster() as cluster:
            yield cluster.start_api(str(short / "fleet.sock"))
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_help_imports_no_grpc_no_asyncio_no_registry() -> None:
    for argv in (["--help"], ["help", "list-units"], ["version"]):
        code, modules = fleetctl_modules(*argv)
        assert code == 0
        heavy = ("grpc", "google.protobuf", "asyncio", "fleetpy.api.client",
                 "fleetpy.registry.base", *ETCD_CLIENT, *SSH_TLS)
        assert present(modules, heavy) == [], argv


def test_list_units_over_the_api_imports_neither_etcd_nor_ssh_nor_other_commands(
    api: str,
) -> None:
    for argv in (["list-units"], ["list-machines"]):
        code, modules = fleetctl_modules("--endpoint", api, *argv)
        assert code == 0
        assert "fleetpy.api.client" in modules and "fleetpy.ctl.lists" in modules
        assert present(modules, (*ETCD_CLIENT, *SSH_TLS, *OTHER_COMMANDS, *UNIT_PARSING)) == []


def test_start_over_the_api_imports_neither_etcd_nor_ssh(api: str, tmp_path: Path) -> None:
    (tmp_path / "hello.service").write_text("[Service]\nExecStart=/bin/true\n")
    code, modules = fleetctl_modules("--endpoint", api, "start", "hello.service", cwd=tmp_path)
    assert code == 0
    assert "fleetpy.ctl.actions" in modules
    assert present(modules, (*ETCD_CLIENT, *SSH_TLS, "fleetpy.ctl.lists",
                             "fleetpy.ctl.remote", "fleetpy.ctl.status")) == []


def test_list_units_over_etcd_imports_no_fleet_api_stubs() -> None:
    code, modules = fleetctl_modules("--driver", "etcd", "--etcd-endpoints",
                                     "http://127.0.0.1:9", "--request-timeout", "0.5",
                                     "list-units")
    assert code == 1  # nothing listens there; the command got as far as asking etcd
    assert "fleetpy.registry.etcd_client" in modules
    assert present(modules, ("fleetpy.api.client", "fleetpy.api.gen.fleet_pb2_grpc",
                             *SSH_TLS, *OTHER_COMMANDS)) == []


def test_every_command_is_in_the_lazy_table() -> None:
    """COMMAND_MODULES names each command of each module (help lists them from it)."""
    import importlib

    found = {cmd.name: module for module in set(ctl_main.COMMAND_MODULES.values())
             for cmd in importlib.import_module(f"fleetpy.ctl.{module}").COMMANDS}
    assert found == ctl_main.COMMAND_MODULES


QUICK_EXIT = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("python teardown\\n"))
from fleetpy.ctl.main import run
run()
"""


def test_the_command_ends_without_pythons_teardown_with_its_status_and_output(
    tmp_path: Path,
) -> None:
    """``run`` (the console script) ends a command that loaded gRPC with os._exit after
    flushing: all of its output (more than a pipe holds), its status, no teardown."""
    short = Path(tempfile.mkdtemp(prefix="fimp", dir="/tmp"))
    with Cluster(machines=(M1, M2), simulate=False) as cluster:
        cluster.report(*[UnitState(f"u{i:04}.service", (M1, M2)[i % 2].id, "loaded", "active",
                                   "running", f"{i:040x}") for i in range(2000)])
        try:
            api = cluster.start_api(str(short / "fleet.sock"))
            p = subprocess.run([sys.executable, "-c", QUICK_EXIT, "--endpoint", api,
                                "list-units", "--fields", "unit,hash", "--full"],
                               capture_output=True, text=True, timeout=60)
        finally:
            shutil.rmtree(short, ignore_errors=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # no teardown
    lines = p.stdout.splitlines()
    assert len(p.stdout) > 65536 and len(lines) == 2001
    assert lines[-1].split() == ["u1999.service", f"{1999:040x}"]
    p = subprocess.run([sys.executable, "-c", QUICK_EXIT, "--endpoint",
                        f"unix://{tmp_path}/none.sock", "list-units"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.startswith("Error: cannot reach the fleet API at unix://")
    assert "python teardown" not in p.stderr
    p = subprocess.run([sys.executable, "-c", QUICK_EXIT, "--help"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "list-units" in p.stdout
    assert p.stderr == "python teardown\n"  # no gRPC loaded: Python ends as usual
