"""fleetctl end to end, in-process, against a fake cluster.

Every scenario runs twice: ``--driver etcd`` on an injected MemoryRegistry, and
``--driver api`` through the real gRPC server on a unix socket (backed by the
same kind of registry). A fake engine + agent schedules units and reports
their states, so blocking commands complete as on a real cluster.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result

from tests.unit.test_ctl_support import M1, M2, Cluster

ROOT = Path(__file__).resolve().parents[2]
HELLO = (ROOT / "unit-files" / "static" / "hello.service").read_text()
ON_M1 = "4f4a4289.../172.17.8.101"


@dataclass
class Fleet:
    cluster: Cluster
    api: str | None
    dir: Path

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.cluster.ctl(*args, api=self.api, env=env)

    def file(self, name: str, text: str = HELLO) -> str:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)


@pytest.fixture(params=["etcd", "api"])
def fleet(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    short = Path(tempfile.mkdtemp(prefix="fctl", dir="/tmp"))  # unix socket paths are short
    try:
        with Cluster(machines=(M1, M2)) as cluster:
            api = cluster.start_api(str(short / "fleet.sock")) if request.param == "api" else None
            yield Fleet(cluster, api, short / "files")
    finally:
        shutil.rmtree(short, ignore_errors=True)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def expanded(text: str) -> str:
    return "\n".join(line.expandtabs(8).rstrip() for line in text.splitlines())


def test_seed_walkthrough(fleet: Fleet) -> None:
    path = fleet.file("unit-files/static/hello.service")
    assert ok(fleet("load", path)) == (
        f"Unit hello.service inactive\nUnit hello.service loaded on {ON_M1}\n")
    h = fleet.cluster.units()["hello.service"].unit.hash[:7]
    assert expanded(ok(fleet("list-unit-files"))) == (
        "UNIT            HASH    DSTATE  STATE   TARGET\n"
        f"hello.service   {h} loaded  loaded  {ON_M1}")
    assert expanded(ok(fleet("list-units"))) == (
        "UNIT            MACHINE                         ACTIVE          SUB\n"
        f"hello.service   {ON_M1}        inactive        dead")
    assert ok(fleet("unload", "hello.service")) == "Unit hello.service inactive\n"
    assert expanded(ok(fleet("list-units"))) == "UNIT    MACHINE ACTIVE  SUB"
    assert expanded(ok(fleet("list-unit-files"))) == (
        "UNIT            HASH    DSTATE          STATE           TARGET\n"
        f"hello.service   {h} inactive        inactive        -")
    assert ok(fleet("start", "hello.service")) == f"Unit hello.service launched on {ON_M1}\n"
    assert expanded(ok(fleet("list-units"))) == (
        "UNIT            MACHINE                         ACTIVE  SUB\n"
        f"hello.service   {ON_M1}        active  running")
    assert ok(fleet("stop", "hello.service")) == f"Unit hello.service loaded on {ON_M1}\n"
    assert ok(fleet("destroy", "hello.service")) == "Destroyed hello.service\n"
    assert fleet.cluster.units() == {}
    assert not fleet.cluster.states()  # destroy waited until no machine reports it


def test_no_block(fleet: Fleet) -> None:
    path = fleet.file("hello.service")
    assert ok(fleet("start", "--no-block", path)) == (
        "Unit hello.service inactive\nTriggered unit hello.service start\n")
    assert ok(fleet("stop", "--no-block", "hello.service")) == "Triggered unit hello.service stop\n"
    assert ok(fleet("load", "--no-block", "hello.service")) == "Triggered unit hello.service load\n"
    assert ok(fleet("unload", "--no-block", "hello.service")) == (
        "Triggered unit hello.service unload\n")
    assert ok(fleet("destroy", "--no-block", "hello.service")) == "Destroyed hello.service\n"


def test_submit_then_start_several(fleet: Fleet) -> None:
    a, b = fleet.file("a.service"), fleet.file("b.service")
    assert ok(fleet("submit", a, b)) == "Unit a.service inactive\nUnit b.service inactive\n"
    assert ok(fleet("submit", a)) == ""  # idempotent
    out = ok(fleet("start", "a.service", "b"))  # "b" means b.service, as in fleet
    assert sorted(out.splitlines()) == [
        f"Unit a.service launched on {ON_M1}", f"Unit b.service launched on {ON_M1}"]


def test_start_reports_a_failed_unit_instead_of_hanging(fleet: Fleet) -> None:
    fleet.cluster.failing.add("hello.service")
    r = fleet("start", fleet.file("hello.service"))
    assert r.exit_code == 1
    assert r.stderr == (
        f"Error waiting for units: Unit hello.service failed on {ON_M1}: "
        "systemd says failed/failed\n")


def test_unplaceable_unit_says_why_and_block_attempts_time_out(fleet: Fleet) -> None:
    reason = "no machine matches MachineMetadata=region=eu"
    fleet.cluster.waiting["hello.service"] = reason
    r = fleet("start", "--block-attempts=2", fleet.file("hello.service"))
    assert r.exit_code == 1
    assert r.stderr.count(reason) == 1
    assert r.stderr == (
        f"Unit hello.service is waiting to be scheduled: {reason}\n"
        "Error waiting for units: timed out waiting for unit hello.service to be "
        "scheduled on a machine\n")


def test_destroy_times_out_while_a_machine_still_reports_the_unit(fleet: Fleet) -> None:
    ok(fleet("start", fleet.file("hello.service")))
    fleet.cluster.pause()  # the agent does not clean up (once a pass under way is done)
    r = fleet("destroy", "--block-attempts=1", "hello.service")
    assert r.exit_code == 1
    assert "timed out waiting for unit hello.service to be removed (still reported by " \
        f"{ON_M1})" in r.stderr


def test_restart(fleet: Fleet) -> None:
    ok(fleet("start", fleet.file("hello.service")))
    assert ok(fleet("restart", "hello.service")) == (
        f"Unit hello.service loaded on {ON_M1}\nUnit hello.service launched on {ON_M1}\n")
    ok(fleet("unload", "hello.service"))
    r = fleet("restart", "hello.service")
    assert r.exit_code == 1
    assert r.stderr == "Unable to restart unit hello.service in state inactive\n"


def test_cat(fleet: Fleet) -> None:
    ok(fleet("submit", fleet.file("hello.service")))
    assert ok(fleet("cat", "hello.service")) == HELLO
    for args in ((), ("a.service", "b.service")):
        r = fleet("cat", *args)
        assert (r.exit_code, r.stderr) == (1, "One unit file must be provided\n")


def test_templates_and_instances(fleet: Fleet) -> None:
    tmpl = "[Unit]\nDescription=web on %i\n[Service]\nExecStart=/bin/sleep %i\n" \
           "[X-Fleet]\nConflicts=web@*.service\n"
    templates = fleet.dir / "templates"
    fleet.file("templates/web@.service", tmpl)
    fleet.file("templates/side@.service", tmpl.replace("Conflicts=web@*", "MachineOf=web@%i"))
    instances = fleet.dir / "instances"
    instances.mkdir()
    for n in ("web@5555.service", "web@6666.service"):
        (instances / n).symlink_to("../templates/web@.service")

    # instances are symlinks to templates: the link's name, the template's contents
    out = ok(fleet("start", *sorted(str(p) for p in instances.iterdir())))
    assert out.splitlines()[:2] == [
        "Unit web@5555.service inactive", "Unit web@6666.service inactive"]
    assert sorted(out.splitlines()[2:]) == [
        f"Unit web@5555.service launched on {ON_M1}", f"Unit web@6666.service launched on {ON_M1}"]
    assert ok(fleet("cat", "web@5555.service")) == tmpl

    # an instance with no file of its own: the template beside the given path
    ok(fleet("start", str(templates / "side@7777.service")))
    assert fleet.cluster.units()["side@7777.service"].unit.contents.startswith("[Unit]")

    # ...or the template from the registry
    ok(fleet("submit", str(templates / "web@.service")))
    assert ok(fleet("start", "web@8080.service")).endswith(
        f"Unit web@8080.service launched on {ON_M1}\n")

    # templates themselves cannot be loaded or started
    before = fleet.cluster.units()
    for verb in ("start", "load"):
        r = fleet(verb, "web@.service")
        assert r.exit_code == 1
        assert r.stderr == (f"Error: Unable to {verb} web@.service: it is a template unit; "
                            f"{verb} an instance of it instead (such as web@1.service)\n")
    assert fleet.cluster.units() == before


def test_replace_and_differing_local_file(fleet: Fleet) -> None:
    path = fleet.file("hello.service")
    ok(fleet("start", path))
    old = fleet.cluster.units()["hello.service"].unit
    Path(path).write_text(HELLO.replace("My Service", "My New Service"))
    r = fleet("start", path)
    assert r.exit_code == 0
    assert r.stderr == (
        f"WARNING: Unit hello.service in registry differs from local unit file {path}\n")
    assert fleet.cluster.units()["hello.service"].unit == old
    assert ok(fleet("start", "--replace", path)) == f"Unit hello.service launched on {ON_M1}\n"
    new = fleet.cluster.units()["hello.service"]
    assert "My New Service" in new.unit.contents
    assert any(s.hash == new.unit.hash for s in fleet.cluster.states())


def test_lists_fields_legend_full_json(fleet: Fleet) -> None:
    glob = HELLO + "[X-Fleet]\nGlobal=true\n"
    ok(fleet("submit", fleet.file("hello.service"), fleet.file("everywhere.service", glob)))
    ok(fleet("start", "hello.service"))
    h = fleet.cluster.units()["hello.service"].unit.hash
    fields = "unit,global,state,target,desc"
    assert ok(fleet("list-unit-files", "--no-legend", "--fields", fields)) == (
        "everywhere.service\ttrue\t-\t\tglobal\t\t\t\tMy Service\n"
        f"hello.service\t\tfalse\tlaunched\t{ON_M1}\tMy Service\n")
    assert ok(fleet("list-units", "-l", "--no-legend", "--fields", "unit,machine,load,hash")) == (
        f"hello.service\t{M1.id}/172.17.8.101\tloaded\t{h}\n")
    import json

    rows = json.loads(ok(fleet("list-unit-files", "--output", "json")))
    assert rows[1] == {"unit": "hello.service", "hash": h, "dstate": "launched",
                       "state": "launched", "target": f"{M1.id}/172.17.8.101"}
    assert expanded(ok(fleet("list-machines"))) == (
        "MACHINE         IP              METADATA\n"
        "4f4a4289...     172.17.8.101    -\n"
        "ca541338...     172.17.8.102    region=us-east")
    assert ok(fleet("list-machines", "--full", "--no-legend", "--fields", "machine")) == (
        f"{M1.id}\n{M2.id}\n")
    r = fleet("list-units", "--fields", "unit,bogus")
    assert r.exit_code == 1 and r.stderr.startswith('Invalid key in output format: "bogus"')


# Bad input: a clear message, exit 1, and the registry unchanged ------------------------

BAD = [
    # (files to create {name: text}, argv, message on stderr)
    ({"bad.service": "ExecStart=/bin/true\n"}, ["submit", "{dir}/bad.service"],
     'Error: invalid unit file "bad.service": line 1: text outside a section'),
    ({"bad.service": "[Service]\nExecStart\n"}, ["start", "{dir}/bad.service"],
     'Error: invalid unit file "bad.service": line 2: missing "="'),
    ({"empty.service": ""}, ["load", "{dir}/empty.service"],
     'Error: invalid unit file "empty.service": empty unit file'),
    ({"big.service": "[Service]\n" + "#" * 70000 + "\n"}, ["submit", "{dir}/big.service"],
     'Error: invalid unit file "big.service": 70011 bytes, more than 65536'),
    ({"hello.txt": HELLO}, ["submit", "{dir}/hello.txt"],
     'Error: invalid unit name "hello.txt": unknown unit type ".txt"'),
    ({"hello": HELLO}, ["start", "{dir}/hello"],
     'Error: invalid unit name "hello": missing a type suffix such as .service'),
    ({"he llo.service": HELLO}, ["submit", "{dir}/he llo.service"],
     "Error: invalid unit name \"he llo.service\": invalid character(s) ' '"),
    ({}, ["start", ".."], 'Error: invalid unit name "..": '),
    ({}, ["submit", "{dir}/.."], 'Error: invalid unit name "..": '),
    ({}, ["start", "x" * 300 + ".service"], "longer than 255 bytes"),
    ({}, ["start", "nope.service"],
     "Error: unable to find unit nope.service in the registry or on the filesystem"),
    ({}, ["start", "foo@1.service"], "Error: unable to find unit foo@1.service or its "
     "template foo@.service in the registry or on the filesystem"),
    ({"x.service": "[X-Fleet]\nMachineID=abc\nGlobal=true\n"}, ["submit", "{dir}/x.service"],
     "MachineID cannot be combined with Global=true"),
    ({"x.service": "[X-Fleet]\nGlobal=true\nMachineOf=y.service\n"},
     ["start", "{dir}/x.service"], "Global=true cannot be combined with MachineOf"),
    ({"x.service": "[X-Fleet]\nConflicts=a*\nReplaces=b.service\n"},
     ["load", "{dir}/x.service"], "Conflicts cannot be combined with Replaces"),
    ({"x.service": "[X-Fleet]\nMachineOf=db.service\nConflicts=db*\n"},
     ["submit", "{dir}/x.service"],
     "MachineOf=db.service can never be met: its own Conflicts=db* excludes it"),
    ({"x.service": "[X-Fleet]\nMachineMetadata=region\n"}, ["start", "{dir}/x.service"],
     'Error: invalid [X-Fleet] in "x.service": MachineMetadata=region: expected key=value'),
    ({"w@.service": "[X-Fleet]\nMachineMetadata=hostname=%i\n"}, ["start", "{dir}/w@.service"],
     "Error: Unable to start w@.service: it is a template unit"),
    ({"good.service": HELLO, "bad.service": "junk"},
     ["start", "{dir}/good.service", "{dir}/bad.service"], 'invalid unit file "bad.service"'),
    ({"x.scope": HELLO}, ["submit", "{dir}/x.scope"],
     'Error: invalid unit name "x.scope": a .scope unit cannot be loaded from a unit file'),
    ({"fleet.service": HELLO}, ["start", "{dir}/fleet.service"],
     'Error: invalid unit name "fleet.service": fleet\'s own unit: fleet never manages itself'),
    ({"systemd-journald.service": HELLO}, ["load", "{dir}/systemd-journald.service"],
     'Error: invalid unit name "systemd-journald.service": names starting with "systemd-"'),
    ({"multi-user.target": HELLO}, ["submit", "{dir}/multi-user.target"],
     "a special unit systemd itself defines (systemd.special(7))"),
    ({".hidden.service": HELLO}, ["start", "{dir}/.hidden.service"],
     'Error: invalid unit name ".hidden.service": starts with "."'),
    ({"user@.service": HELLO}, ["start", "{dir}/user@1000.service"],
     'Error: invalid unit name "user@1000.service": a special unit systemd itself defines'),
    ({"x.service": "[X-Fleet]\nGlobal=true\nConflicts=y*\n"}, ["submit", "{dir}/x.service"],
     "Global=true cannot be combined with Conflicts"),
    ({}, ["cat", "nope.service"], "Unit nope.service not found"),
    ({}, ["stop", "hello.service", "nope.service"], "Unit nope.service not found"),
    ({}, ["destroy", "nope"], "Unit nope.service not found"),
    ({}, ["unload", "nope.service"], "Unit nope.service not found"),
    ({}, ["stop", "idle.service"], "Unable to stop unit idle.service in state inactive"),
]


@pytest.mark.parametrize(("files", "argv", "message"), BAD)
def test_bad_input(fleet: Fleet, files: dict[str, str], argv: list[str], message: str) -> None:
    ok(fleet("start", fleet.file("hello.service")))
    ok(fleet("submit", fleet.file("idle.service")))
    for name, text in files.items():
        fleet.file(name, text)
    before, states = fleet.cluster.units(), fleet.cluster.states()
    r = fleet(*[a.format(dir=fleet.dir) for a in argv])
    assert r.exit_code == 1, r.output
    assert message in r.stderr
    assert "Traceback" not in r.output
    assert fleet.cluster.units() == before
    assert fleet.cluster.states() == states


def test_status_and_journal_on_this_machine(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []

    def fake_run(cmd: Sequence[str]) -> int:
        ran.append(list(cmd))
        return 0

    monkeypatch.setattr("fleetpy.ctl.remote._run", fake_run)
    monkeypatch.setattr("fleetpy.ctl.remote.local_machine_id", lambda: M1.id)
    ok(fleet("submit", fleet.file("hello.service")))
    r = fleet("status", "hello.service")
    assert (r.exit_code, r.stderr) == (1, "Unit hello.service does not appear to be loaded.\n")
    r = fleet("journal", "hello.service")
    assert (r.exit_code, r.stderr) == (1, "Unit hello.service does not appear to be running.\n")
    r = fleet("status", "nope.service")
    assert (r.exit_code, r.stderr) == (1, "Unit nope.service does not exist.\n")
    ok(fleet("start", "hello.service"))
    ok(fleet("status", "hello.service"))
    ok(fleet("journal", "-n", "5", "hello.service"))
    assert ran == [["systemctl", "status", "-l", "--no-pager", "--", "hello.service"],
                   ["journalctl", "--no-pager", "--lines=5", "--output=short",
                    "--unit=hello.service"]]
    ran.clear()
    monkeypatch.setattr("fleetpy.ctl.remote.local_machine_id", lambda: M2.id)
    known = fleet.file("known_hosts", "")
    ok(fleet("--known-hosts-file", known, "status", "hello.service"))
    ok(fleet("--strict-host-key-checking=false", "journal", "--sudo", "-f", "hello.service"))
    assert [c[0] for c in ran] == ["ssh", "ssh"]
    assert ran[0][-3:] == ["--", M1.public_ip,
                           "systemctl status -l --no-pager -- hello.service"]
    assert ran[1][-1] == ("sudo journalctl --no-pager --lines=10 --output=short --follow "
                          "--unit=hello.service")
    assert "-l" in ran[0] and ran[0][ran[0].index("-l") + 1] == "core"
    assert f"UserKnownHostsFile={known}" in ran[0]
    assert "UserKnownHostsFile=/dev/null" in ran[1]


def test_status_and_journal_never_take_a_unit_name_for_an_option(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []

    def fake_run(cmd: Sequence[str]) -> int:
        ran.append(list(cmd))
        return 0

    monkeypatch.setattr("fleetpy.ctl.remote._run", fake_run)
    monkeypatch.setattr("fleetpy.ctl.remote.local_machine_id", lambda: M1.id)
    ok(fleet("start", fleet.file("-.service"), fleet.file("a\\x2db.service")))
    ok(fleet("status", "--", "-.service", "a\\x2db.service"))
    ok(fleet("journal", "--", "-.service"))
    assert ran == [["systemctl", "status", "-l", "--no-pager", "--", "-.service"],
                   ["systemctl", "status", "-l", "--no-pager", "--", "a\\x2db.service"],
                   ["journalctl", "--no-pager", "--lines=10", "--output=short",
                    "--unit=-.service"]]
    ran.clear()
    monkeypatch.setattr("fleetpy.ctl.remote.local_machine_id", lambda: M2.id)
    ok(fleet("--strict-host-key-checking=false", "status", "--", "-.service"))
    ok(fleet("--strict-host-key-checking=false", "status", "a\\x2db.service"))
    ok(fleet("--strict-host-key-checking=false", "journal", "-n", "1", "--", "-.service"))
    assert [c[-3:] for c in ran] == [
        ["--", M1.public_ip, "systemctl status -l --no-pager -- -.service"],
        ["--", M1.public_ip, "systemctl status -l --no-pager -- 'a\\x2db.service'"],
        ["--", M1.public_ip, "journalctl --no-pager --lines=1 --output=short --unit=-.service"],
    ]
