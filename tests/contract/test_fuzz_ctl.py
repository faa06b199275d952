"""fleetctl fed generated unit files, unknown units and bad flags, through the API (served
on a real etcd) and straight to etcd: a refusal exits non-zero with one clear error line
and no traceback, and leaves every key in etcd as it was."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from fleetpy.api.validation import checked_unit_file
from fleetpy.model.unitfile import MAX_UNIT_SIZE
from tests.contract.fuzz_support import FuzzCluster
from tests.fixtures.fuzz import unit_files, unit_names
from tests.unit.test_ctl_support import M1

pytestmark = pytest.mark.etcd

DRIVERS = st.sampled_from(["api", "etcd"])
HELLO = "[Service]\nExecStart=/bin/true\n"
CLI = settings(max_examples=60, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large])
# what may surround the error line: click's usage lines, fleet's hint
HINTS = ("Usage: ", "Try '", "Run 'fleetctl help' for usage.")


@pytest.fixture(scope="module")
def fz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzCluster]:
    cluster = FuzzCluster(tmp_path_factory.mktemp("fuzz-ctl"))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-ctl-files")


def error_lines(r: Result) -> list[str]:
    """The lines that say what went wrong (not usage hints); no traceback."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    return [line for line in r.stderr.splitlines()
            if line.strip() and not line.startswith(HINTS)]


def error_line(r: Result) -> str:
    """The one line that says what went wrong."""
    lines = error_lines(r)
    assert len(lines) == 1, r.stderr
    return lines[0]


def file_name_ok(name: str) -> bool:
    """A name this machine can hold as a file (fleetctl takes the unit name from it)."""
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return False
    return 0 < size <= 255 and name not in (".", "..") and "/" not in name and "\0" not in name


@CLI
@given(name=unit_names(), data=unit_files(), driver=DRIVERS)
@example(name="a.service", data="#" * (MAX_UNIT_SIZE + 1), driver="api")
@example(name="..service", data="#" * (MAX_UNIT_SIZE + 1), driver="etcd")  # name first
@example(name="a.service", data=b"[Service]\n\xff\n", driver="etcd")
@example(name="x.scope", data=HELLO, driver="api")
@example(name="x.service\n", data="", driver="etcd")  # the type was not quoted: two lines
def test_submit_generated_files(
    fz: FuzzCluster, files: Path, name: str, data: str | bytes, driver: str
) -> None:
    assume(file_name_ok(name))
    path = files / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    try:
        expected: str | None = None
        try:
            unit, _ = checked_unit_file(name, path.read_bytes())
        except ValueError as e:
            expected = str(e)
        event("refused" if expected else "accepted")
        before = fz.keyspace()
        r = fz.ctl(driver, "submit", str(path))
        if expected is not None:
            assert r.exit_code == 1, r.output
            assert error_line(r) == f"Error: {expected}"
            assert fz.keyspace() == before
            return
        assert (r.exit_code, r.stdout) == (0, f"Unit {name} inactive\n"), r.output
        assert fz.unit_contents(name) == unit.contents
    finally:
        path.unlink()
        fz.delete_units()


COMMANDS = ("submit", "load", "start", "stop", "unload", "destroy", "cat", "restart",
            "list-units", "list-unit-files", "status", "journal", "set-metadata", "bogus")
ARGS = ("nope.service", "nope", "a/b", "", "x.scope", "fleet.service", "a@.service",
        "systemd-x.service", "-", "--", "--bogus", "--no-block", "--block-attempts=-1",
        "--block-attempts=x", "--fields=nope", "--fields=", "--replace", "--lines=-5",
        "region=", "=x", "/nonexistent/x.service", "{dir}", "{bad}", "{dir}/", "a b.service")
GLOBAL = ("--request-timeout=abc", "--driver=xyz", "--endpoint=nonsense", "--bogus-flag",
          "--etcd-key-prefix=", "--request-timeout=-1")


@CLI
@given(
    driver=DRIVERS,
    command=st.sampled_from(COMMANDS),
    args=st.lists(st.sampled_from(ARGS) | st.text(max_size=12), max_size=3),
    global_flag=st.none() | st.sampled_from(GLOBAL),
)
@example(driver="api", command="start", args=["nope.service"], global_flag=None)
@example(driver="etcd", command="destroy", args=["a/b"], global_flag=None)
@example(driver="api", command="submit", args=["{bad}"], global_flag=None)
@example(driver="etcd", command="list-unit-files", args=["--fields=nope"], global_flag=None)
@example(driver="api", command="bogus", args=[], global_flag=None)
@example(driver="api", command="submit", args=["{"], global_flag=None)
@example(driver="etcd", command="list-units", args=[], global_flag="--request-timeout=abc")
@example(driver="api", command="list-units", args=["\r"], global_flag=None)  # CI found it
def test_bad_commands(
    fz: FuzzCluster, files: Path, driver: str, command: str, args: list[str],
    global_flag: str | None,
) -> None:
    bad = files / "bad.service"
    bad.write_text("no section here\n")
    places = {"{dir}": str(files), "{dir}/": f"{files}/", "{bad}": str(bad)}
    argv = [places.get(a, a) for a in args]
    assume(all("\0" not in a for a in argv))
    before = fz.keyspace()
    r = fz.ctl(driver, *([global_flag] if global_flag else []), "--request-timeout=10",
               command, *argv)
    if r.exit_code == 0:  # e.g. list-units with nothing wrong: nothing to check but...
        assert r.exception is None and "Traceback" not in r.output
    else:  # one line per unit at most (fleet: "Unit x not found" for each)
        lines = error_lines(r)
        assert 1 <= len(lines) <= max(1, len(argv)), r.stderr
        assert all(len(line) < 400 for line in lines), r.stderr
    assert fz.keyspace() == before  # nothing valid was given: nothing may be written


def test_clear_errors_for_common_mistakes(fz: FuzzCluster, files: Path) -> None:
    (files / "nosec.service").write_text("ExecStart=/bin/true\n")
    os.makedirs(files / "adir.service", exist_ok=True)
    cases = [
        (("start", "nope.service"), "unable to find unit nope.service"),
        (("destroy", "nope.service"), "Unit nope.service not found"),
        (("cat", "nope.service"), "Unit nope.service not found"),
        (("submit", str(files / "nosec.service")),
         'invalid unit file "nosec.service": line 1: text outside a section'),
        (("submit", str(files / "adir.service")), "is a directory, not a unit file"),
        (("submit", "/nonexistent/x.service"),
         "unable to find unit x.service in the registry or on the filesystem"),
        (("start", "a/b@.service"), "it is a template unit"),
        (("submit", "--bogus"), "No such option '--bogus'"),
        (("list-unit-files", "--fields=nope"), "nope"),
        (("frobnicate",), 'unknown subcommand: "frobnicate"'),
        (("set-metadata", M1.id[:8], "k=" + "v" * 2_000_000), "longer than 1024 characters"),
        (("set-metadata", "nope", "k=v"), "nope"),
    ]
    for driver in ("api", "etcd"):
        before = fz.keyspace()
        for args, message in cases:
            r = fz.ctl(driver, *args)
            assert r.exit_code != 0, (driver, args, r.output)
            assert message in error_line(r), (driver, args, r.stderr)
        assert fz.keyspace() == before
