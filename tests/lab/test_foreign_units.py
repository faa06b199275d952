"""Units fleet did not write, on a lab of its own: fleet never touches them.

Lab ``flforeign`` (172.17.44.0/24): 3 hosts, each with its own sshd as
``ssh.service`` in /etc/systemd/system. fleetctl runs from this machine (as
after ``eval $(fleetlab env)``). Host units are planted only under the hosts'
private mounts (/etc/systemd/system, /run). Every test leaves no fleet units.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fleetpy.agent.foreign import refusal_reason
from fleetpy.lab import HostInfo, Lab
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import (
    SLEEPER,
    destroy_all,
    eventually,
    fleetctl,
    ok,
    reasons,
    running,
)
from tests.lab.foreign_driver import check_outside_fleet
from tests.lab.test_remote import run_ctl

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

DRIVER = Path(__file__).resolve().with_name("foreign_driver.py")
HOST_UNIT = "[Unit]\nDescription=host-owned {name}\n[Service]\nExecStart=/bin/sleep 99999\n"
# The property's host units: a file in /etc, a regular file in /run, a link in /run to a
# file outside the search path; all running. Plus every host's sshd.
OWNED = {
    "hetc.service": "/etc/systemd/system/hetc.service",
    "hrun.service": "/run/systemd/system/hrun.service",
    "hlnk.service": "/run/systemd/system/hlnk.service",
}
LINK_TARGET = "/run/hostown/hlnk.service"
PROPERTY_UNITS = [*OWNED, "ssh.service"]


@pytest.fixture(scope="module")
def foreign() -> Iterator[Lab]:
    with own_lab("flforeign", "172.17.44.0/24", hosts=3, etcd_members=3,
                 fleet_env={"FLEET_AGENT_TTL": "5"}) as lab:
        yield lab


@pytest.fixture
def lab(foreign: Lab) -> Iterator[Lab]:
    yield foreign
    destroy_all(foreign)


def sh(lab: Lab, host: str, script: str) -> str:
    done = lab.exec(host, ["sh", "-ec", script])
    assert done.returncode == 0, f"{host}: {script}: {done.stderr}"
    return done.stdout


def put(lab: Lab, host: str, path: str, text: str) -> None:
    done = lab.exec(host, ["sh", "-ec", f'mkdir -p "$(dirname {path})"; cat > {path}'],
                    input=text)
    assert done.returncode == 0, f"{host}: writing {path}: {done.stderr}"


def facts(lab: Lab, paths: list[str], units: list[str]) -> dict[str, list[str]]:
    """host -> what each path is (link target or file sha1) and each unit's MainPID."""
    script = "".join(
        f'if [ -L {p} ]; then echo "link $(readlink {p})"; elif [ -f {p} ]; then '
        f'echo "file $(sha1sum < {p})"; else echo absent; fi\n' for p in paths
    ) + "".join(f"echo pid $(systemctl show -p MainPID --value -- {u})\n" for u in units)
    return {h.name: sh(lab, h.name, script).splitlines() for h in lab.hosts}


def unit_file(tmp: Path, name: str) -> str:
    path = tmp / name
    path.write_text(SLEEPER.format(name=name))
    return str(path)


def first_pick(lab: Lab) -> HostInfo:
    """The host the engine picks for a unit in an empty cluster (least loaded, then ID)."""
    return min(lab.hosts, key=lambda h: h.machine_id)


def test_outside_fleet_on_a_real_host(foreign: Lab) -> None:
    """The adapter's facts (the same scenario runs on the fake in tests/unit)."""
    done = foreign.exec(foreign.hosts[1].name, [sys.executable, str(DRIVER), "lab"], timeout=60)
    assert done.returncode == 0, done.stderr
    check_outside_fleet(json.loads(done.stdout), "lab")


def test_fleets_ssh_service_never_touches_the_hosts_sshd(lab: Lab, tmp_path: Path) -> None:
    before = facts(lab, ["/run/systemd/system/ssh.service"], ["ssh.service"])
    assert all(rows[1] != "pid 0" for rows in before.values()), before
    started = fleetctl(lab, "start", "--block-attempts=6", unit_file(tmp_path, "ssh.service"))
    assert started.returncode != 0, started.stdout
    assert "Unit ssh.service is waiting to be scheduled:" in started.stderr, started.stderr
    reason = eventually(lambda: reasons(lab).get("ssh.service"), what="the reason")
    for h in lab.hosts:
        assert refusal_reason("ssh.service", h.machine_id,
                              "/etc/systemd/system/ssh.service") in reason
    ok(fleetctl(lab, "stop", "--no-block", "ssh.service"))
    ok(fleetctl(lab, "destroy", "ssh.service"))
    assert facts(lab, ["/run/systemd/system/ssh.service"], ["ssh.service"]) == before
    for h in lab.hosts:  # every sshd still answers
        assert ok(run_ctl(lab, tmp_path, "ssh", h.machine_id[:8], "hostname")).strip() == h.name


def test_host_units_on_one_machine_send_fleets_units_elsewhere(lab: Lab, tmp_path: Path) -> None:
    first = first_pick(lab)
    runtime, etc = "/run/systemd/system/own.service", "/etc/systemd/system/solo.service"
    put(lab, first.name, runtime, HOST_UNIT.format(name="own"))
    put(lab, first.name, etc, HOST_UNIT.format(name="solo"))
    before = facts(lab, [runtime, etc], ["own.service", "solo.service"])
    for name in ("own.service", "solo.service"):  # one by one: each is first's to take
        ok(fleetctl(lab, "start", unit_file(tmp_path, name)))
        where = eventually(lambda n=name: running(lab, [n]), what=f"{name} running")[name]
        assert where != first.name
    logs = "".join(sh(lab, h.name, "journalctl -u fleet.service --no-pager -o cat")
                   for h in lab.hosts)
    assert f"unscheduled own.service from {first.machine_id[:8]}: own.service exists on" in logs
    ok(fleetctl(lab, "destroy", "own.service", "solo.service"))
    assert facts(lab, [runtime, etc], ["own.service", "solo.service"]) == before
    sh(lab, first.name, f"rm {runtime} {etc}")


def test_global_unit_stays_off_a_machine_that_has_it_with_the_reason(
    lab: Lab, tmp_path: Path
) -> None:
    first, etc = first_pick(lab), "/etc/systemd/system/gown.service"
    put(lab, first.name, etc, HOST_UNIT.format(name="gown"))
    before = facts(lab, [etc, "/run/systemd/system/gown.service"], ["gown.service"])
    path = tmp_path / "gown.service"
    path.write_text(SLEEPER.format(name="gown") + "\n[X-Fleet]\nGlobal=true\n")
    ok(fleetctl(lab, "start", str(path)))
    others = sorted(h.name for h in lab.hosts if h.name != first.name)
    eventually(lambda: sorted(h for h, _ in active_hosts(lab, "gown.service")) == others,
               what="gown.service active on the other hosts")

    def reason() -> str | None:
        out = ok(fleetctl(lab, "list-unit-files", "--output=json", "--fields=unit,reason"))
        return next(r["reason"] for r in json.loads(out) if r["unit"] == "gown.service")

    expected = refusal_reason("gown.service", first.machine_id, etc)
    assert eventually(reason, what="a reason") == expected
    ok(fleetctl(lab, "destroy", "gown.service"))
    assert facts(lab, [etc, "/run/systemd/system/gown.service"], ["gown.service"]) == before
    sh(lab, first.name, f"rm {etc}")


def active_hosts(lab: Lab, unit: str) -> list[tuple[str, str]]:
    out = ok(fleetctl(lab, "list-units", "--no-legend", "--full", "--fields=unit,machine,active"))
    ips = {h.ip: h.name for h in lab.hosts}
    return [(ips[m.rsplit("/", 1)[-1]], a) for u, m, a in (r.split() for r in out.splitlines())
            if u == unit and a == "active"]


# the property ----------------------------------------------------------------------------------
def plant_owned(lab: Lab) -> None:
    for h in lab.hosts:
        put(lab, h.name, LINK_TARGET, HOST_UNIT.format(name="hlnk"))
        put(lab, h.name, OWNED["hetc.service"], HOST_UNIT.format(name="hetc"))
        put(lab, h.name, OWNED["hrun.service"], HOST_UNIT.format(name="hrun"))
        sh(lab, h.name, f"ln -sfn {LINK_TARGET} {OWNED['hlnk.service']}; systemctl daemon-reload; "
                        "systemctl start hetc.service hrun.service hlnk.service")


def settled(lab: Lab) -> bool:
    """Every unit desired loaded or launched waits or got there (fleet acted on it)."""
    out = ok(fleetctl(lab, "list-unit-files", "--output=json", "--fields=unit,dstate,state"))
    return all(r["state"] in ("waiting", r["dstate"]) for r in json.loads(out)
               if r["dstate"] != "inactive")


OPS = st.lists(st.tuples(st.sampled_from(["submit", "load", "start", "stop", "unload", "destroy"]),
                         st.sampled_from(PROPERTY_UNITS)), min_size=2, max_size=5)


def test_no_fleet_operation_changes_a_unit_fleet_did_not_write(
    foreign: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    lab = foreign
    plant_owned(lab)
    tmp = tmp_path_factory.mktemp("units")
    files = {name: unit_file(tmp, name) for name in PROPERTY_UNITS}
    paths = [*OWNED.values(), LINK_TARGET, "/run/systemd/system/ssh.service"]
    before = facts(lab, paths, PROPERTY_UNITS)
    assert all("pid 0" not in rows for rows in before.values()), before

    # bounded: 5 sequences, no shrinking (a failing run stays short; the ops are reported)
    @settings(max_examples=5, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(ops=OPS)
    def sequence(ops: list[tuple[str, str]]) -> None:
        try:
            for op, name in ops:
                if op == "submit":
                    fleetctl(lab, "submit", files[name])
                elif op == "destroy":
                    fleetctl(lab, "destroy", name)
                else:
                    fleetctl(lab, op, "--no-block", files[name] if op != "unload" else name)
                eventually(lambda: settled(lab), what="fleet done with every unit")
                assert facts(lab, paths, PROPERTY_UNITS) == before, (op, name)
        finally:
            destroy_all(lab)

    try:
        sequence()
        assert facts(lab, paths, PROPERTY_UNITS) == before
    finally:
        for h in lab.hosts:
            sh(lab, h.name, "systemctl stop hetc.service hrun.service hlnk.service || true; rm -f "
               + " ".join([*OWNED.values(), LINK_TARGET]) + "; systemctl daemon-reload")
