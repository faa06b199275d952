"""A secured cluster on labs of its own (flsec, 172.17.50.0/24): real etcd TLS and auth.

`fleetlab up --secure`: etcd requires client certificates, auth on, role
fleetpy limited to /fleetpy/; fleetd's API on https with client certificates;
metrics on. (test_secure_password.py: `--secure=password`, the same lab name
after this module is done.) Every bad credential is refused with a message
naming the cause, and nothing is written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetpy.lab import Lab, pki
from tests.lab.conftest import fresh_lab, session_lock
from tests.lab.test_walkthrough import eventually, ok, rows
from tests.lab.traces import traces

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180), pytest.mark.usefixtures("root")]

NAME, SUBNET = "flsec", "172.17.50.0/24"
BIN = Path(sys.prefix) / "bin"
HELLO = Path(__file__).resolve().parents[2] / "unit-files" / "static" / "hello.service"
METRICS_PORT = 9400


def ctl(lab: Lab, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """fleetctl here with `fleetlab env`'s variables, some replaced (FLEETCTL_X="...")."""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/nonexistent", **lab.env(), **extra}
    return subprocess.run([str(BIN / "fleetctl"), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def unit_files(lab: Lab) -> list[str]:
    return [r[0] for r in rows(ok(ctl(lab, "--driver", "etcd", "list-unit-files")))]


@pytest.fixture(scope="module")
def bad_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA's client certificate: ``foreign.pem``; the lab's CA signs ``expired``
    once the lab is up (see ``expired``)."""
    d = tmp_path_factory.mktemp("certs")
    pki.issue(pki.make_ca(d / "other", "another CA"), d, "foreign", "fleetctl")
    return d


def expired(lab: Lab, d: Path) -> pki.Cert:
    pki_dir = lab.cfg.state_dir / "pki"
    ca = pki.Cert(pki_dir / "ca.pem", pki_dir / "ca-key.pem")
    return pki.issue(ca, d, "expired", "fleetctl", days=-1)


@pytest.fixture(scope="module")
def cert_lab() -> Iterator[Lab]:
    with session_lock(NAME):
        lab = fresh_lab(NAME, SUBNET)
        lab.up(hosts=3, etcd_members=3, secure="cert",
               fleet_env={"FLEET_METRICS_ADDRESS": f"0.0.0.0:{METRICS_PORT}"})
        try:
            yield lab
        finally:
            lab.down()
        assert traces(NAME) == [], "a secure lab leaves nothing behind (certificates included)"


def test_cluster_on_mtls_etcd_with_a_tls_api(cert_lab: Lab) -> None:
    lab = cert_lab
    env = lab.env()
    assert env["FLEETCTL_ENDPOINT"].startswith("https://")
    assert all(u.startswith("https://") for u in env["FLEETCTL_ETCD_ENDPOINTS"].split(","))
    # fleetd authenticated to etcd by its certificate (user fleetd); fleetctl over https.
    assert len(rows(ok(ctl(lab, "list-machines")))) == 3
    assert "launched on" in ok(ctl(lab, "start", str(HELLO)))
    assert rows(ok(ctl(lab, "list-units")))[0][2:] == ["active", "running"]
    # fleetctl straight to etcd, as user fleetctl (its certificate's CN).
    assert rows(ok(ctl(lab, "--driver", "etcd", "list-units")))[0][0] == "hello.service"
    # status over ssh works as anywhere else.
    assert "Active: active (running)" in ok(ctl(lab, "status", "hello.service"))


def test_api_refuses_bad_client_certificates(cert_lab: Lab, bad_certs: Path) -> None:
    lab = cert_lab
    stale = expired(lab, bad_certs)
    probe = bad_certs / "probe.service"
    probe.write_text("[Service]\nExecStart=/bin/true\n")
    cases = [
        ({"FLEETCTL_CERT_FILE": "", "FLEETCTL_KEY_FILE": ""},
         ["requires a client certificate (--cert-file and --key-file)"]),
        ({"FLEETCTL_CERT_FILE": str(bad_certs / "foreign.pem"),
          "FLEETCTL_KEY_FILE": str(bad_certs / "foreign-key.pem")},
         ["refused our client certificate", "foreign.pem is not signed by the CA in"]),
        ({"FLEETCTL_CERT_FILE": str(stale.cert), "FLEETCTL_KEY_FILE": str(stale.key)},
         ["refused our client certificate", "expired.pem has expired"]),
        ({"FLEETCTL_CA_FILE": str(bad_certs / "other" / "ca.pem")},
         ["the server's certificate is not trusted"]),
        ({"FLEETCTL_ENDPOINT": lab.env()["FLEETCTL_ENDPOINT"].replace("https", "http")},
         ["does the server require TLS? use https://"]),
    ]
    for extra, words in cases:
        refused(ctl(lab, "submit", str(probe), **extra), *words)
    assert "probe.service" not in unit_files(lab)


def test_api_with_tls_but_without_client_certificates(cert_lab: Lab) -> None:
    """A fleetd whose API does not ask for client certificates (no api_cafile)."""
    lab = cert_lab
    host = lab.hosts[2]
    dropin = "/run/systemd/system/fleet.service.d/50-no-client-certs.conf"
    ok(lab.exec(host.name, ["sh", "-c", f"mkdir -p {os.path.dirname(dropin)} && printf "
                            f"'[Service]\\nEnvironment=FLEET_API_CAFILE=\\n' > {dropin} && "
                            "systemctl daemon-reload && systemctl restart fleet.service"]))
    try:
        endpoint = f"https://{host.ip}:49153"
        done = ctl(lab, "list-machines", FLEETCTL_ENDPOINT=endpoint, FLEETCTL_CERT_FILE="",
                   FLEETCTL_KEY_FILE="")
        assert len(rows(ok(done))) == 3
        log = ok(lab.exec(host.name, ["journalctl", "-u", "fleet", "-n", "30", "--no-pager"]))
        assert "(TLS, no client certificates)" in log
    finally:
        ok(lab.exec(host.name, ["sh", "-c", f"rm {dropin} && systemctl daemon-reload && "
                                "systemctl restart fleet.service"]))


def test_etcd_refuses_bad_certificates_and_roles(cert_lab: Lab, bad_certs: Path) -> None:
    lab = cert_lab
    stale = expired(lab, bad_certs)
    probe = bad_certs / "probe.service"
    probe.write_text("[Service]\nExecStart=/bin/true\n")
    plain = lab.env()["FLEETCTL_ETCD_ENDPOINTS"].replace("https://", "http://")
    cases = [
        ({"FLEETCTL_CERT_FILE": "", "FLEETCTL_KEY_FILE": ""},
         ["TLS: etcd requires a client certificate"]),
        ({"FLEETCTL_CERT_FILE": str(bad_certs / "foreign.pem"),
          "FLEETCTL_KEY_FILE": str(bad_certs / "foreign-key.pem")},
         ["etcd refused our client certificate", "foreign.pem is not signed by the CA"]),
        ({"FLEETCTL_CERT_FILE": str(stale.cert), "FLEETCTL_KEY_FILE": str(stale.key)},
         ["etcd refused our client certificate", "expired.pem has expired"]),
        ({"FLEETCTL_CA_FILE": str(bad_certs / "other" / "ca.pem")},
         ["TLS: etcd's certificate is not trusted"]),
        ({"FLEETCTL_ETCD_ENDPOINTS": plain}, ["does etcd require TLS? use https://"]),
        # A role without the prefix: fleetctl's user may not touch /other/.
        ({"FLEETCTL_ETCD_KEY_PREFIX": "/other/"},
         ["denied", "the user our client certificate names (its CN)",
          "do not grant access to the key prefix /other/"]),
    ]
    for extra, words in cases:
        refused(ctl(lab, "--driver", "etcd", "submit", str(probe), **extra), *words)
    assert "probe.service" not in unit_files(lab)
    keys = ok(lab.exec(lab.hosts[0].name, ["etcdctl", "get", "--prefix", "/other/",
                                           "--keys-only"]))
    assert keys.strip() == ""


def test_fleetd_with_an_expired_certificate_says_so(cert_lab: Lab, bad_certs: Path) -> None:
    lab = cert_lab
    host = lab.hosts[1]
    stale = expired(lab, bad_certs)
    shown = lab.cfg.state_dir / "pki" / "stale"  # the hosts see the state dir, not /tmp
    shown.mkdir(exist_ok=True)
    for f in (stale.cert, stale.key):
        (shown / f.name).write_bytes(f.read_bytes())
    dropin = "/run/systemd/system/fleet.service.d/50-expired.conf"
    ok(lab.exec(host.name, ["sh", "-c", f"mkdir -p {os.path.dirname(dropin)} && printf "
                            f"'[Service]\\nEnvironment=FLEET_ETCD_CERTFILE={shown}/expired.pem\\n"
                            f"Environment=FLEET_ETCD_KEYFILE={shown}/expired-key.pem\\n' "
                            f"> {dropin} && systemctl daemon-reload && "
                            "systemctl kill -s KILL fleet.service"]))
    try:
        def said() -> bool:
            log = lab.exec(host.name, ["journalctl", "-u", "fleet", "-n", "20", "--no-pager"])
            return "expired.pem has expired" in log.stdout and "etcd refused our client" \
                in log.stdout
        eventually(said, timeout=20, what="fleetd naming the expired certificate")
    finally:
        ok(lab.exec(host.name, ["sh", "-c", f"rm {dropin} && systemctl daemon-reload && "
                                "systemctl reset-failed fleet.service; "
                                "systemctl restart fleet.service"]))


def scrape(ip: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{ip}:{METRICS_PORT}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> dict[str, float]:
    """name{labels} -> value, histograms' buckets left out."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_bucket"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_metrics_scraped_and_parsed_health_checked(cert_lab: Lab) -> None:
    lab = cert_lab
    ok(ctl(lab, "start", str(HELLO)))
    leaders = 0
    for host in lab.hosts:
        status, text = scrape(host.ip, "/metrics")
        assert status == 200
        m = samples(text)
        assert m["fleetpy_machines"] == 3 and m["fleetpy_placements"] >= 1
        assert m["fleetpy_units{state=launched}"] >= 1
        assert m["fleetpy_unit_states{active_state=active}"] >= 1
        assert m["fleetpy_units_waiting"] == 0 and m["fleetpy_etcd_up"] == 1
        assert m["fleetpy_registered"] == 1
        assert m["fleetpy_lease_keepalive_failures_total"] == 0
        assert m["fleetpy_etcd_requests_total{method=range,outcome=ok}"] > 0
        assert m["fleetpy_etcd_request_duration_seconds_count{method=txn}"] > 0
        assert m["fleetpy_reconcile_duration_seconds_count{loop=agent}"] > 0
        leaders += int(m["fleetpy_engine_leader"])
        if m["fleetpy_engine_leader"]:
            assert m["fleetpy_reconcile_duration_seconds_count{loop=engine}"] > 0
        status, body = scrape(host.ip, "/health")
        health = json.loads(body)
        assert (status, health["registered"], health["etcd"]) == (200, True, True)
        assert health["machine"] == host.machine_id
    assert leaders == 1
    # etcd frozen: health says so (503), fleetd itself keeps running.
    state = json.loads((lab.cfg.state_dir / "lab.json").read_text())
    pids = [m["proc"]["pid"] for m in state["members"]]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        status, body = scrape(lab.hosts[0].ip, "/health")
        assert status == 503 and json.loads(body)["etcd"] is False
        assert samples(scrape(lab.hosts[0].ip, "/metrics")[1])["fleetpy_etcd_up"] == 0
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
