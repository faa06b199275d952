"""fleetpy.ctl.quick: a plain list command read without click, exactly as click reads it.

The parse cases put the quick reading beside click's own (the click group run
with the list command's work replaced by a recorder); the end-to-end cases run
the ``fleetctl`` entry point in a new process against a real API server, once
through the quick path and once through click, and compare every byte of
stdout and stderr and the exit status. The import guard fails if click comes
back on the list path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fleetpy.ctl import listing, quick
from fleetpy.ctl.common import CtlEnv
from fleetpy.ctl.main import main
from fleetpy.model.types import Machine, UnitState
from tests.unit.test_ctl_support import M1, M2, Cluster

STYLED = Machine("0dd0ba11c0ffee0000000000000000a3", "172.17.8.103", {"note": "\x1b[31mred"})
COMMAND = {"list-units": "list_units", "list-machines": "list_machines",
           "list-unit-files": "list_unit_files"}
DEFAULTS = {"list-units": listing.UNITS_DEFAULT, "list-machines": listing.MACHINES_DEFAULT,
            "list-unit-files": listing.UNIT_FILES_DEFAULT}


def click_reading(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                  env: dict[str, str]) -> tuple[Any, ...] | None:
    """What the click group hands the list command's work: (command, settings, full,
    no_legend, fields, output); None when click refuses the command line."""
    got: list[tuple[Any, ...]] = []
    for command, name in COMMAND.items():
        def record(ctl: CtlEnv, *args: Any, command: str = command) -> None:
            got.append((command, ctl.settings, *args))

        monkeypatch.setattr(listing, name, record)
    result = CliRunner().invoke(main, argv, env=env, obj=CtlEnv())
    if result.exit_code != 0:
        return None
    assert len(got) == 1, result.output
    return got[0]


def quick_reading(argv: list[str], env: dict[str, str]) -> tuple[Any, ...] | None:
    q = quick.parse(argv, env)
    if q is None:
        return None
    fields = DEFAULTS[q.command] if q.fields is None else q.fields
    return (q.command, q.settings, q.full, q.no_legend, fields, q.output)


READ_QUICKLY: list[tuple[list[str], dict[str, str]]] = [
    (["list-units"], {}),
    (["list-machines"], {}),
    (["list-unit-files"], {}),
    (["list-units", "--full", "--no-legend", "--fields", "unit,hash", "-o", "json"], {}),
    (["list-units", "-l", "--fields=unit,machine", "--output=json"], {}),
    (["list-units", "-ojson"], {}),
    (["list-machines", "--fields", "machine,state", "--output", "plain"], {}),
    (["list-unit-files", "--fields", "unit,reason", "--full"], {}),
    (["list-units", "--fields", "bogus"], {}),  # the command itself says what is wrong
    (["list-units", "--fields="], {}),
    (["--endpoint", "http://10.0.0.1:49153", "list-units"], {}),
    (["--endpoint=http://10.0.0.1:2379", "list-units"], {}),  # an etcd port: --driver etcd
    (["--endpoint", "http://10.0.0.1:2379", "--driver", "API", "list-units"], {}),
    (["--driver", "Etcd", "--etcd-endpoints", "http://a:2379,http://b:2379",
      "--etcd-key-prefix", "/x/", "--request-timeout", "0.5", "list-units"], {}),
    (["--ca-file", "ca.pem", "--cert-file", "c.pem", "--key-file", "k.pem",
      "--etcd-username", "root", "--plain-http-ok", "list-machines"], {}),
    (["--tunnel", "10.0.0.1", "--ssh-username", "me", "--ssh-timeout", "3",
      "--ssh-identity-file", "id", "--known-hosts-file", "kh",
      "--strict-host-key-checking", "false", "list-units"], {}),
    (["--strict-host-key-checking=Off", "list-units"], {}),
    (["list-units"], {"FLEETCTL_ENDPOINT": "unix:///tmp/x.sock",
                      "FLEETCTL_REQUEST_TIMEOUT": "7", "FLEETCTL_PLAIN_HTTP_OK": "1"}),
    (["list-units"], {"FLEETCTL_ENDPOINT": "http://10.0.0.1:4001"}),  # etcd port via env
    (["list-units"], {"FLEETCTL_ENDPOINT": "http://10.0.0.1:4001", "FLEETCTL_DRIVER": "api"}),
    (["--endpoint", "unix:///a.sock", "list-units"], {"FLEETCTL_ENDPOINT": "unix:///b.sock"}),
    (["list-units"], {"FLEETCTL_ETCD_PASSWORD": "secret", "FLEETCTL_PLAIN_HTTP_OK": "no",
                      "FLEETCTL_STRICT_HOST_KEY_CHECKING": "0", "FLEETCTL_ENDPOINT": ""}),
]

LEFT_TO_CLICK: list[tuple[list[str], dict[str, str]]] = [
    ([], {}),
    (["--help"], {}),
    (["-h"], {}),
    (["--version"], {}),
    (["help", "list-units"], {}),
    (["list-units", "--help"], {}),
    (["--debug", "list-units"], {}),
    (["list-units", "extra"], {}),
    (["list-units", "-lo", "json"], {}),
    (["list-units", "--output", "yaml"], {}),
    (["list-units", "--full", "--full"], {}),
    (["list-units", "--fields"], {}),
    (["list-units", "--"], {}),
    (["--endpoint"], {}),
    (["--endpoint", "list-units"], {}),
    (["--request-timeout", "soon", "list-units"], {}),
    (["--driver", "ssh", "list-units"], {}),
    (["--plain-http-ok=1", "list-units"], {}),
    (["--strict-host-key-checking", "maybe", "list-units"], {}),
    (["--bogus", "list-units"], {}),
    (["list-units", "--endpoint", "x"], {}),
    (["start", "a.service"], {}),
    (["list-units"], {"FLEETCTL_DEBUG": "1"}),
    (["list-units"], {"FLEETCTL_LIST_UNITS_FULL": "1"}),
    (["list-units"], {"FLEETCTL_VERSION": "1"}),
    (["list-units"], {"FLEETCTL_REQUEST_TIMEOUT": "soon"}),
    (["list-units"], {"FLEETCTL_PLAIN_HTTP_OK": "perhaps"}),
]


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.startswith("FLEETCTL_"):
            monkeypatch.delenv(var)


@pytest.mark.parametrize(("argv", "env"), READ_QUICKLY)
def test_quick_reading_is_clicks(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str]
) -> None:
    clean_env(monkeypatch)
    mine = quick_reading(argv, env)
    assert mine is not None, "a plain list command is read without click"
    assert mine == click_reading(monkeypatch, argv, env)


@pytest.mark.parametrize(("argv", "env"), LEFT_TO_CLICK)
def test_anything_else_is_left_to_click(argv: list[str], env: dict[str, str]) -> None:
    assert quick.parse(argv, env) is None


# End to end: the console script's entry point, in a new process.
RUN = "from fleetpy.ctl.main import run\nrun()\n"
CLICK = ("import sys\nfrom fleetpy.ctl.cli import main\n"
         "main(sys.argv[1:], prog_name='fleetctl')\n")


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    short = Path(tempfile.mkdtemp(prefix="fqk", dir="/tmp"))
    try:
        with Cluster(machines=(M1, M2, STYLED), simulate=False) as cluster:
            cluster.report(*[UnitState(f"u{i:03}.service", (M1, M2)[i % 2].id, "loaded",
                                       "active", "running", f"{i:040x}") for i in range(300)])
            yield cluster.start_api(str(short / "fleet.sock"))
    finally:
        shutil.rmtree(short, ignore_errors=True)


def fleetctl(code: str, argv: list[str], api: str,
             importtime: bool = False) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "FLEETCTL_ENDPOINT": api, "PYTHONIOENCODING": "utf-8"}
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run([sys.executable, *flags, "-c", code, *argv], capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.mark.parametrize("argv", [
    ["list-units"],
    ["list-units", "--full", "--fields", "unit,machine,load,active,sub,hash"],
    ["list-units", "-o", "json", "--no-legend"],
    ["list-machines"],
    ["list-machines", "-l", "-o", "json"],
    ["list-unit-files"],
    ["list-units", "--fields", "unit,bogus"],
    ["--endpoint", "unix:///nonexistent/fleet.sock", "list-units"],
    ["--driver", "etcd", "--etcd-endpoints", "http://127.0.0.1:9", "--request-timeout", "0.3",
     "list-units"],
])
def test_the_quick_path_prints_what_click_prints(api: str, argv: list[str]) -> None:
    """Byte for byte, stdout and stderr, and the exit status; ANSI styles in a unit name
    are stripped from output that is not a terminal, as click.echo does."""
    fast, slow = fleetctl(RUN, argv, api), fleetctl(CLICK, argv, api)
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        slow.returncode, slow.stdout, slow.stderr)
    if argv == ["list-units"]:
        assert len(fast.stdout.splitlines()) == 301
    if argv == ["list-machines"]:
        assert "note=red" in fast.stdout


@pytest.mark.parametrize("argv", [["list-units"], ["list-machines"], ["list-unit-files"],
                                  ["list-units", "--fields", "unit,hash", "-o", "json"]])
def test_list_commands_do_not_import_click(api: str, argv: list[str]) -> None:
    """click (and what only click uses) stays out of a plain list command's process: the
    imports as Python reports them (-X importtime), the command then ends at once."""
    p = fleetctl(RUN, argv, api, importtime=True)
    assert p.returncode == 0, p.stderr
    imported = {line.split("|")[-1].strip() for line in p.stderr.splitlines()
                if line.startswith("import time:")}
    assert "fleetpy.ctl.listing" in imported and "grpc" in imported
    assert sorted(m for m in imported if m.split(".")[0] in ("click", "gettext", "uuid")) == []
    assert "fleetpy.ctl.cli" not in imported and "fleetpy.ctl.lists" not in imported
    p = fleetctl(RUN, ["--help"], api, importtime=True)
    assert p.returncode == 0 and "click" in p.stderr  # the guard sees click when it is there
