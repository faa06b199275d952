"""`fleetlab up --secure=password` (lab flsec, after test_secure.py): etcd serves TLS and
authenticates users by name and password; role fleetpy limited to /fleetpy/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from tests.lab.conftest import fresh_lab, session_lock
from tests.lab.test_secure import NAME, SUBNET, ctl, refused, unit_files
from tests.lab.test_walkthrough import ok, rows

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120), pytest.mark.usefixtures("root")]


@pytest.fixture(scope="module")
def password_lab() -> Iterator[Lab]:
    with session_lock(NAME):
        lab = fresh_lab(NAME, SUBNET)
        lab.up(hosts=2, etcd_members=1, secure="password")
        try:
            yield lab
        finally:
            lab.down()


def test_etcd_with_user_and_password(password_lab: Lab, tmp_path: Path) -> None:
    lab = password_lab
    env = lab.env()
    assert env["FLEETCTL_ETCD_USERNAME"] == "fleetctl" and env["FLEETCTL_ETCD_PASSWORD"]
    # fleetd logged in as user fleetd (password from a 0600 file, not in its unit).
    assert len(rows(ok(ctl(lab, "list-machines")))) == 2
    assert len(rows(ok(ctl(lab, "--driver", "etcd", "list-machines")))) == 2
    dropin = ok(lab.exec(lab.hosts[0].name, ["systemctl", "cat", "fleet.service"]))
    assert "PASSWORD" not in dropin and "EnvironmentFile=" in dropin
    probe = tmp_path / "probe.service"
    probe.write_text("[Service]\nExecStart=/bin/true\n")
    refused(ctl(lab, "--driver", "etcd", "submit", str(probe), FLEETCTL_ETCD_PASSWORD="wrong"),
            "refused user 'fleetctl': wrong user name or password")
    refused(ctl(lab, "--driver", "etcd", "submit", str(probe), FLEETCTL_ETCD_USERNAME="",
                FLEETCTL_ETCD_PASSWORD=""), "requires authentication")
    refused(ctl(lab, "--driver", "etcd", "--etcd-key-prefix", "/other/", "submit", str(probe)),
            "denied", "user 'fleetctl'", "do not grant access to the key prefix /other/")
    assert "probe.service" not in unit_files(lab)
    logs = ok(lab.exec(lab.hosts[0].name, ["journalctl", "-u", "fleet", "--no-pager"]))
    assert env["FLEETCTL_ETCD_PASSWORD"] not in logs
