"""Unit names end to end, on a lab of its own: what submit refuses, what the agent can run.

Lab ``flnames`` (172.17.42.0/24): 2 hosts, 1 etcd member. fleetctl runs from
this machine (as after ``eval $(fleetlab env)``), through the API or with
``--driver etcd``. Every test leaves the cluster without units.
"""

from __future__ import annotations

import asyncio
import json
import os
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from fleetpy.api.client import ApiDriver
from fleetpy.lab import Lab
from fleetpy.model.names import is_template, is_valid, template_of
from fleetpy.model.reserved import managed_problem, unit_problem
from fleetpy.model.types import TargetState
from fleetpy.model.unitfile import make_unit_file, parse_unit
from tests.lab.conftest import fresh_lab, require_root, session_lock
from tests.lab.fleet_helpers import eventually

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

BIN = Path(sys.prefix) / "bin"
SLEEPER = "[Service]\nExecStart=/bin/sleep infinity\n"
REFUSED = {
    "x.scope": "a .scope unit cannot be loaded from a unit file",
    "init.scope": "a .scope unit cannot be loaded from a unit file",
    "-.slice": "a .slice unit is part of systemd's own resource tree",
    "dev-sda.device": "a .device unit comes from udev",
    "-.mount": "a special unit systemd itself defines (systemd.special(7))",
    "fleet.service": "fleet's own unit: fleet never manages itself",
    "systemd-journald.service": 'names starting with "systemd-" are systemd\'s own units',
    "dbus.service": "a special unit systemd itself defines",
    "multi-user.target": "a special unit systemd itself defines",
    ".hidden.service": 'starts with ".": systemd skips hidden files',
    "_" + "u" * 246 + ".service": 'starts with "_" and is 255 bytes long',
    "p" * 250 + ".path": "by default, 258 bytes, over the 255-byte limit",
    "l" * 243 + "@i.service": "an instance goes into the slice system-PREFIX.slice",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("names")


@pytest.fixture(scope="module")
def lab(home: Path) -> Iterator[Lab]:
    require_root()
    with session_lock("flnames"):
        the_lab = fresh_lab("flnames", "172.17.42.0/24")
        the_lab.up(hosts=2, etcd_members=1)
        try:
            def machines() -> bool:
                done = ctl(the_lab, home, "list-machines", "--no-legend")
                return done.returncode == 0 and len(done.stdout.splitlines()) == 2

            eventually(machines, what="both machines in list-machines")
            yield the_lab
        finally:
            the_lab.down()


def ctl(lab: Lab, home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """fleetctl here, as a user of the lab would run it after `eval $(fleetlab env)`."""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           **lab.env(), "FLEETCTL_KNOWN_HOSTS_FILE": str(home / "known_hosts")}
    return subprocess.run([str(BIN / "fleetctl"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}: {done.stdout}{done.stderr}"
    return done.stdout


def unit_files(lab: Lab, home: Path, *driver: str) -> dict[str, dict[str, str]]:
    out = ok(ctl(lab, home, *driver, "list-unit-files", "--output=json",
                 "--fields=unit,dstate,state,reason"))
    return {row["unit"]: row for row in json.loads(out)}


def on_hosts(lab: Lab) -> dict[str, list[str]]:
    """host -> files in /run/fleet/units (temporary ones included)."""
    found = {}
    for host in lab.hosts:
        done = lab.exec(host.name, ["ls", "-A", "/run/fleet/units"])
        found[host.name] = done.stdout.split() if done.returncode == 0 else []
    return found


def host_of(lab: Lab, said: str) -> str:
    """The host in fleetctl's "Unit X launched on 3f2a.../172.17.42.101"."""
    ip = said.strip().splitlines()[-1].rsplit("/", 1)[-1]
    return next(h.name for h in lab.hosts if h.ip == ip)


def show(lab: Lab, host: str, name: str) -> dict[str, str]:
    done = lab.exec(host, ["systemctl", "show", "-p", "LoadState,ActiveState,FragmentPath",
                           "--", name])
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.fixture
def clean(lab: Lab, home: Path) -> Iterator[None]:
    yield
    names = list(unit_files(lab, home))
    if names:
        ok(ctl(lab, home, "destroy", "--", *names))


def test_refused_names_exit_1_with_the_rule_and_write_nothing(
    lab: Lab, home: Path, tmp_path: Path, clean: None
) -> None:
    files = {name: tmp_path / name for name in REFUSED}
    for path in files.values():
        path.write_text(SLEEPER)
    (tmp_path / "g.service").write_text(SLEEPER + "[X-Fleet]\nGlobal=true\nConflicts=o*\n")
    for driver in ((), ("--driver", "etcd")):
        for name, path in files.items():
            verb = "start" if name.startswith(("fleet", "systemd")) else "submit"
            done = ctl(lab, home, *driver, verb, str(path))
            assert done.returncode == 1, (driver, name, done.stdout, done.stderr)
            assert done.stderr.startswith("Error: invalid unit name ")
            assert REFUSED[name] in done.stderr, (driver, name, done.stderr)
        done = ctl(lab, home, *driver, "start", str(tmp_path / "g.service"))
        assert done.returncode == 1
        assert "Global=true cannot be combined with Conflicts" in done.stderr
    # The API server refuses them too, whatever its client checked first.

    async def create_all() -> dict[str, str]:
        api = ApiDriver(lab.env()["FLEETCTL_ENDPOINT"])
        said = {}
        try:
            for name in REFUSED:
                try:
                    await api.create_unit(make_unit_file(name, SLEEPER), TargetState.LAUNCHED)
                    said[name] = "accepted"
                except ValueError as e:
                    said[name] = str(e)
        finally:
            await api.close()
        return said

    for name, said in asyncio.run(create_all()).items():
        assert said.startswith("invalid unit name ") and REFUSED[name] in said, (name, said)
    assert unit_files(lab, home) == {} and unit_files(lab, home, "--driver", "etcd") == {}
    assert on_hosts(lab) == {h.name: [] for h in lab.hosts}


def test_a_255_byte_name_starts_and_is_destroyed(
    lab: Lab, home: Path, tmp_path: Path, clean: None
) -> None:
    plain = "n" * 247 + ".service"
    instance = "t@" + "i" * 245 + ".service"
    assert len(plain.encode()) == len(instance.encode()) == 255
    (tmp_path / plain).write_text(SLEEPER)
    (tmp_path / "t@.service").write_text(SLEEPER)
    for name in (plain, instance):
        host = host_of(lab, ok(ctl(lab, home, "start", str(tmp_path / name))))
        state = show(lab, host, name)
        assert (state["LoadState"], state["ActiveState"]) == ("loaded", "active"), state
        assert state["FragmentPath"] == f"/run/systemd/system/{name}"
        ok(ctl(lab, home, "destroy", name))
        assert show(lab, host, name)["ActiveState"] == "inactive"
        assert lab.exec(host, ["test", "-e", f"/run/systemd/system/{name}"]).returncode == 1
    assert on_hosts(lab) == {h.name: [] for h in lab.hosts}  # no temporary file left


def test_a_machine_of_cycle_waits_and_names_the_cycle(
    lab: Lab, home: Path, tmp_path: Path, clean: None
) -> None:
    machine_of = {"a": "b", "b": "a", "x": "y", "y": "z", "z": "x", "side": "a"}
    for name, target in machine_of.items():
        (tmp_path / f"{name}.service").write_text(
            SLEEPER + f"[X-Fleet]\nMachineOf={target}.service\n")
    paths = [str(tmp_path / f"{n}.service") for n in machine_of]
    ok(ctl(lab, home, "start", "--no-block", *paths))
    pair = "MachineOf cycle: a.service -> b.service -> a.service"
    three = "MachineOf cycle: x.service -> y.service -> z.service -> x.service"
    want = {"a.service": pair, "b.service": pair, "x.service": three, "y.service": three,
            "z.service": three,
            "side.service": "MachineOf=a.service: waiting for a.service to be scheduled"}

    def reasons() -> dict[str, str] | None:
        rows = unit_files(lab, home)
        found = {n: r["reason"] for n, r in rows.items() if r["state"] == "waiting"}
        return found if found == want else None

    eventually(reasons, what="the cycles named in list-unit-files")
    done = ctl(lab, home, "start", "--block-attempts=2", "b.service")
    assert done.returncode == 1 and pair in done.stdout + done.stderr


def test_status_and_journal_of_a_name_that_looks_like_an_option(
    lab: Lab, home: Path, tmp_path: Path, clean: None
) -> None:
    for name in ("-.service", "a\\x2db.service"):
        (tmp_path / name).write_text(SLEEPER)
        ok(ctl(lab, home, "start", str(tmp_path / name)))
    status = ok(ctl(lab, home, "status", "--", "-.service", "a\\x2db.service"))
    assert "● -.service" in status and "● a\\x2db.service" in status
    assert status.count("Active: active (running)") == 2
    assert ctl(lab, home, "journal", "--", "-.service").returncode == 0
    ok(ctl(lab, home, "destroy", "--", "-.service", "a\\x2db.service"))


# property: for any unit name the API accepts, the agent can load and unload it -----------
CHARS = string.ascii_letters + string.digits + ":-_.\\"
CONTENTS = {
    "service": SLEEPER,
    "target": "[Unit]\nDescription=fleetpy name property\n",
    "socket": "[Socket]\nListenStream=/run/fleet-name-property.sock\n",
    "timer": "[Timer]\nOnActiveSec=1h\n",
    "path": "[Path]\nPathExists=/nonexistent/fleet-name-property\n",
}
STARTED = {"service", "target"}  # the others are loaded: their triggered units do not exist
HOST_UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system", "/etc/systemd/system")


def _host_has(name: str) -> bool:
    """The hosts share this machine's /usr: a name systemd already knows there is not ours."""
    names = [name, template_of(name) or name]
    return any(os.path.lexists(os.path.join(d, n)) for d in HOST_UNIT_DIRS for n in names)


@st.composite
def unit_names(draw: st.DrawFn) -> str:
    prefix = draw(st.text(CHARS, min_size=1, max_size=20))
    instance = draw(st.none() | st.text(CHARS + "@", min_size=1, max_size=20))
    suffix = draw(st.sampled_from(sorted(CONTENTS)))
    stem = prefix if instance is None else f"{prefix}@{instance}"
    if draw(st.booleans()):  # as long as a name can be
        stem = prefix + "x" * (254 - len(suffix) - len(stem)) + stem[len(prefix):]
    return f"{stem}.{suffix}"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=(Phase.explicit, Phase.reuse, Phase.generate))  # shrinking costs minutes
@given(name=unit_names())
@example(name="sT-CzZgxwLTcO@a@.path")  # CI found it: the engine took it for a template
def test_any_accepted_name_is_loaded_and_unloaded(
    lab: Lab, home: Path, tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    suffix = name.rsplit(".", 1)[1]
    assume(is_valid(name) and not is_template(name) and managed_problem(name) is None)
    assume(unit_problem(name, parse_unit(name, CONTENTS[suffix])) is None)
    assume(not _host_has(name))
    path = tmp_path_factory.mktemp("prop") / name
    path.write_text(CONTENTS[suffix])
    verb = "start" if suffix in STARTED else "load"
    host = host_of(lab, ok(ctl(lab, home, verb, str(path))))
    state = show(lab, host, name)
    assert state["LoadState"] == "loaded", (name, state)
    if suffix in STARTED:
        assert state["ActiveState"] == "active", (name, state)
    assert unit_files(lab, home)[name]["state"] == ("launched" if verb == "start" else "loaded")
    ok(ctl(lab, home, "destroy", "--", name))
    assert lab.exec(host, ["test", "-e", f"/run/systemd/system/{name}"]).returncode == 1
    assert show(lab, host, name)["ActiveState"] == "inactive"
    assert unit_files(lab, home) == {}
    assert on_hosts(lab) == {h.name: [] for h in lab.hosts}
    for h in lab.hosts:  # every agent is still there to converge the next one
        assert lab.exec(h.name, ["systemctl", "is-active", "fleet.service"]).stdout.strip() == (
            "active")
