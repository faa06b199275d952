"""fleetpy.ctl.quick: a plain list command read without click, exactly as click reads it.

The parse cases put the quick reading beside click's own (the click group run
with the list command's work replaced by a recorder); the end-to-end cases run
the ``fleetctl`` entry point in a new process against a real API server, once
through the quick path and once through click, and compare every byte of
stdout and stderr and the exit status. The import guard fails if click comes
back on the list path.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fleetpy.ctl import actions, listing, quick
from fleetpy.ctl.common import CtlEnv
from fleetpy.ctl.main import main
from fleetpy.model.types import Machine, UnitState
from tests.unit.test_ctl_support import M1, M2, Cluster

STYLED = Machine("0dd0ba11c0ffee0000000000000000a3", "172.17.8.103", {"note": "\x1b[31mred"})
LISTS = {"list-units": "list_units", "list-machines": "list_machines",
         "list-unit-files": "list_unit_files"}


def click_reading(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                  env: dict[str, str]) -> tuple[Any, ...] | None:
    """What the click group hands the command's work: (command, settings, parameters by
    name); None when click refuses the command line."""
    got: list[tuple[Any, ...]] = []

    def recorder(real: Any, command: str | None) -> Any:
        def record(ctl: CtlEnv, *args: Any, **kwargs: Any) -> None:
            bound = inspect.signature(real).bind(ctl, *args, **kwargs)
            bound.apply_defaults()
            params = dict(bound.arguments)
            del params["env"]
            name = command or params.pop("verb")
            got.append((name, ctl.settings, params))
        return record

    for command, name in LISTS.items():
        monkeypatch.setattr(listing, name, recorder(getattr(listing, name), command))
    monkeypatch.setattr(actions, "run_unit_command",
                        recorder(actions.run_unit_command, None))
    result = CliRunner().invoke(main, argv, env=env, obj=CtlEnv())
    if result.exit_code != 0:
        return None
    assert len(got) == 1, result.output
    return got[0]


def quick_reading(argv: list[str], env: dict[str, str]) -> tuple[Any, ...] | None:
    """The same from fleetpy.ctl.quick: the call run_quick makes, bound the same way."""
    q = quick.parse(argv, env)
    if q is None:
        return None
    if q.command in LISTS:
        bound = inspect.signature(getattr(listing, LISTS[q.command])).bind(None, **q.params)
    else:
        bound = inspect.signature(actions.run_unit_command).bind(None, q.command, **q.params)
    bound.apply_defaults()
    params = dict(bound.arguments)
    del params["env"]
    params.pop("verb", None)
    return (q.command, q.settings, params)


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
    (["start", "a.service"], {}),
    (["start", "--no-block", "a.service", "b@1.service", "--replace"], {}),
    (["--endpoint", "http://h:49153", "start", "--block-attempts", "3", "./x/a.service"], {}),
    (["load", "a.service", "--block-attempts=0"], {}),
    (["stop", "a.service", "b.service"], {"FLEETCTL_ENDPOINT": "unix:///s.sock"}),
    (["unload", "--no-block", "a.service"], {}),
    (["destroy", "a.service", "--block-attempts", " 7"], {}),
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
    (["start"], {}),
    (["start", "--no-block"], {}),
    (["start", "-", "a.service"], {}),
    (["start", "a.service", "--"], {}),
    (["start", "--block-attempts", "-1", "a.service"], {}),
    (["start", "--block-attempts", "1.5", "a.service"], {}),
    (["stop", "--replace", "a.service"], {}),
    (["destroy", "--no-block=yes", "a.service"], {}),
    (["submit", "a.service"], {}),
    (["restart", "a.service"], {}),
    (["cat", "a.service"], {}),
    (["start", "a.service"], {"FLEETCTL_START_NO_BLOCK": "1"}),
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
    if argv[0] != "list-unit-files":  # its STATE column is the unit-state views'
        assert "fleetpy.ctl.state" not in imported and "pathlib" not in imported
        # nor the Registry protocol, the snapshot types, the FleetClient protocol
        assert sorted(imported & {"fleetpy.registry.base", "fleetpy.api.snapshot",
                                  "fleetpy.ctl.client", "fleetpy.registry.endpoints"}) == []
    p = fleetctl(RUN, ["--help"], api, importtime=True)
    assert p.returncode == 0 and "click" in p.stderr  # the guard sees click when it is there


@pytest.fixture(scope="module")
def acting_api() -> Iterator[str]:
    """An API whose fake engine and agent act on what fleetctl asks (one machine)."""
    short = Path(tempfile.mkdtemp(prefix="fqa", dir="/tmp"))
    try:
        with Cluster() as cluster:
            yield cluster.start_api(str(short / "fleet.sock"))
    finally:
        shutil.rmtree(short, ignore_errors=True)


def in_dir(code: str, where: Path) -> str:
    return f"import os\nos.chdir({str(where)!r})\n{code}"


@pytest.mark.parametrize("steps", [
    [["start", "{}.service"], ["stop", "{}.service"], ["unload", "{}.service"],
     ["destroy", "{}.service"]],
    [["load", "--no-block", "{}.service"], ["start", "{}.service", "--block-attempts", "40"],
     ["destroy", "--no-block", "{}.service"]],
    [["start", "{}.service", "missing.service"]],  # bad input: nothing written
    [["start", "--replace", "{}.service"], ["start", "{}.service"]],
])
def test_unit_commands_on_the_quick_path_print_what_click_prints(
    acting_api: str, tmp_path: Path, steps: list[list[str]]
) -> None:
    """The same steps on two units, one through the quick path, one through click: the
    same output (the unit's name aside), status and import of no click on the first."""
    for name in ("fast", "slow"):
        (tmp_path / f"{name}.service").write_text("[Service]\nExecStart=/bin/sleep 1000\n")
    for step in steps:
        fast = fleetctl(in_dir(RUN, tmp_path), [a.format("fast") for a in step], acting_api,
                        importtime=True)
        slow = fleetctl(in_dir(CLICK, tmp_path), [a.format("slow") for a in step], acting_api)
        imported = [line.split("|")[-1].strip() for line in fast.stderr.splitlines()
                    if line.startswith("import time:")]
        assert "fleetpy.ctl.actions" in imported and "click" not in imported
        fast_err = "".join(line + "\n" for line in fast.stderr.splitlines()
                           if not line.startswith("import time:"))
        assert (fast.returncode, fast.stdout.replace("fast", "slow"),
                fast_err.replace("fast", "slow")) == (slow.returncode, slow.stdout, slow.stderr)
        assert fast.stdout or fast_err  # each step says something (launched, error...)


GC_CHECK = """
import gc, sys
from fleetpy.ctl import listing, remote
from fleetpy.ctl.main import run
real_write = listing.write
def write(pieces):
    sys.stderr.write(f"gc on when the rows are written: {gc.isenabled()}\\n")
    real_write(pieces)
listing.write = write
def ssh(*args, **kwargs):
    sys.stderr.write(f"gc on when ssh runs: {gc.isenabled()}\\n")
remote.ssh.callback = ssh
run()
"""


@pytest.mark.parametrize(("argv", "said"), [
    (["list-units"], "gc on when the rows are written: True"),
    (["ssh", "somewhere"], "gc on when ssh runs: True"),
])
def test_the_garbage_collector_is_back_on_once_the_start_up_is_done(
    api: str, argv: list[str], said: str
) -> None:
    """run() turns the cyclic collector off for the start-up's imports only: a command's
    work (the rows, a long ssh session on the click path) runs with it on."""
    p = fleetctl(GC_CHECK, argv, api)
    assert said in p.stderr.splitlines(), p.stderr


def test_a_list_command_started_with_stdout_closed_ends_quietly(api: str) -> None:
    """Started with descriptor 1 closed (sys.stdout is None), the rows go nowhere, as
    click.echo drops them, and the command still ends with its status, no traceback."""
    env = {"PATH": "/usr/bin:/bin", "FLEETCTL_ENDPOINT": api}
    # closed by a shell just before exec: no preexec_fn, which is not safe in this process
    # (the API server's gRPC threads run here)
    p = subprocess.run(["/bin/sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-c", RUN,
                        "list-units"], stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    assert (p.returncode, p.stderr) == (0, "")


def test_the_quick_reader_declares_what_the_click_commands_declare() -> None:
    """The quick reader's own table of options (fleetpy.ctl.quick) against click's: the same
    option strings, parameter names and defaults, so an option added or a default changed on
    one side only fails here (a spelling only click knows would quietly go to click)."""
    import click

    from fleetpy.ctl import quick
    from fleetpy.ctl.cli import main as group
    from fleetpy.ctl.common import Settings

    def default(p: click.Parameter) -> object:
        return False if (getattr(p, "is_flag", False) and p.default in (None, False)) or \
            repr(p.default).endswith("UNSET") else p.default

    options = [p for p in group.params if p.name not in ("debug", "version")]
    assert {o: p.name for p in options for o in p.opts} == \
        {**{o: field for o, (field, _) in quick.VALUES.items()}, **quick.FLAGS}
    settings = Settings()
    for p in options:
        assert p.name is not None
        assert getattr(settings, p.name) == default(p), p.name
    ctx = click.Context(group)
    for name, spec in quick.SPECS.items():
        command = group.get_command(ctx, name)
        assert command is not None
        declared = [p for p in command.params if isinstance(p, click.Option)]
        assert {o: p.name for p in declared for o in p.opts} == \
            {**spec.flags, **{o: n for o, (n, _) in spec.values.items()}}, name
        assert {p.name: default(p) for p in declared} == dict(spec.defaults), name
        assert any(isinstance(p, click.Argument) for p in command.params) is spec.units, name
