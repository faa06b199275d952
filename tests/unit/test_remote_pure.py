"""The pure parts of remote operations and the secured cluster: ssh command lines,
target lookup, endpoints and TLS reasons, the lab's users, fleetd's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetpy.api.snapshot import Snapshot
from fleetpy.api.transport import TlsFiles, explain, parse_endpoint
from fleetpy.ctl.files import BadInput
from fleetpy.ctl.locate import ssh_target, unit_machines
from fleetpy.ctl.ssh import SshOptions, split_host_port, ssh_argv
from fleetpy.lab.ssh import user_files
from fleetpy.metrics import DaemonState, Metrics, _answer
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitState
from fleetpy.model.unitfile import make_unit_file
from fleetpy.registry.base import UnitRecord
from fleetpy.registry.etcd_rpc import _tls_reason
from fleetpy.registry.memory import MemoryRegistry

A = Machine("605c0ca8aaaa0000000000000000aaaa", "172.17.8.101")
B = Machine("605cffffbbbb0000000000000000bbbb", "172.17.8.102")
C = Machine("e2d9ac47cccc0000000000000000cccc", "172.17.8.103")


@pytest.mark.parametrize("spec, want", [
    ("10.0.0.1", ("10.0.0.1", 22)),
    ("10.0.0.1:2222", ("10.0.0.1", 2222)),
    ("core-01", ("core-01", 22)),
    ("[fe80::1]:2200", ("fe80::1", 2200)),
    ("fe80::1", ("fe80::1", 22)),
])
def test_split_host_port(spec: str, want: tuple[str, int]) -> None:
    assert split_host_port(spec) == want


@pytest.mark.parametrize("spec", ["", "host:", "host:x", "host:70000", ":22"])
def test_split_host_port_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(spec)


def _opt(argv: list[str], name: str) -> str | None:
    values = [argv[i + 1] for i, a in enumerate(argv) if a == "-o" and
              argv[i + 1].startswith(name + "=")]
    return values[0].split("=", 1)[1] if values else None


def test_ssh_argv_checks_host_keys_against_fleets_file() -> None:
    opts = SshOptions(known_hosts_file="/k/known_hosts", identity_file="/k/id")
    argv = ssh_argv(opts, "172.17.8.101", command=["systemctl status -l x.service"])
    assert argv[0] == "ssh" and argv[-3:] == ["--", "172.17.8.101",
                                              "systemctl status -l x.service"]
    assert _opt(argv, "StrictHostKeyChecking") == "accept-new"
    assert _opt(argv, "UserKnownHostsFile") == "/k/known_hosts"
    assert _opt(argv, "GlobalKnownHostsFile") == "/dev/null"
    assert _opt(argv, "BatchMode") == "yes" and _opt(argv, "ForwardAgent") == "no"
    assert argv[argv.index("-l") + 1] == "core" and argv[argv.index("-i") + 1] == "/k/id"
    assert _opt(argv, "ConnectTimeout") == "10"
    loose = ssh_argv(SshOptions(strict=False, timeout=2.5), "h", 2222, forward_agent=True,
                     batch=False, tty=True)
    assert _opt(loose, "StrictHostKeyChecking") == "no"
    assert _opt(loose, "UserKnownHostsFile") == "/dev/null"
    assert _opt(loose, "ConnectTimeout") == "3" and _opt(loose, "BatchMode") is None
    assert "-A" in loose and "-t" in loose and loose[loose.index("-p") + 1] == "2222"
    assert loose[-2:] == ["--", "h"]  # no command: a login shell


def test_ssh_argv_through_a_tunnel_uses_the_same_options_on_both_hops() -> None:
    opts = SshOptions(tunnel="10.0.0.9:2222", known_hosts_file="/k/100%/kh", user="ops")
    argv = ssh_argv(opts, "172.17.8.101")
    proxy = _opt(argv, "ProxyCommand")
    assert proxy is not None
    assert proxy.endswith("-p 2222 -W %h:%p -- 10.0.0.9")
    assert "UserKnownHostsFile=/k/100%%/kh" in proxy  # ssh expands %: escaped
    assert "-l ops" in proxy and "StrictHostKeyChecking=accept-new" in proxy


def test_ssh_argv_ends_options_before_the_host_and_the_command() -> None:
    """ssh reads options after the host too: nothing after "--" may become one."""
    argv = ssh_argv(SshOptions(tunnel="-oProxyCommand=evil"), "-oProxyCommand=touch x",
                    command=["-p", "99"])
    end = argv.index("--")
    assert argv[end:] == ["--", "-oProxyCommand=touch x", "-p", "99"]
    assert "-p" in argv[:end] and argv[argv.index("-p") + 1] == "22"
    proxy = _opt(argv, "ProxyCommand")
    assert proxy is not None and proxy.endswith("-W %h:%p -- -oProxyCommand=evil")


def _snap(*units: tuple[str, str, tuple[str, ...], str]) -> Snapshot:
    """units: (name, contents, machines scheduled on, reported active state)."""
    records, schedule, states = {}, [], []
    for name, contents, on, active in units:
        unit = make_unit_file(name, contents)
        records[name] = UnitRecord(unit, TargetState.LAUNCHED)
        for m in on:
            schedule.append(ScheduledUnit(name, m, TargetState.LAUNCHED, unit.hash, ""))
            if active:
                states.append(UnitState(name, m, "loaded", active, "running", unit.hash))
    return Snapshot(units=records, schedule=schedule, states=states,
                    machines={m.id: m for m in (A, B, C)})


SVC = "[Service]\nExecStart=/bin/true\n"
GLOBAL = SVC + "[X-Fleet]\nGlobal=true\n"


def test_ssh_target_by_machine_prefix_or_unit() -> None:
    snap = _snap(("nginx@6666.service", SVC, (C.id,), "active"),
                 ("e2d9.service", SVC, (A.id,), "active"),
                 ("everywhere.service", GLOBAL, (A.id, B.id), "active"),
                 ("idle.service", SVC, (), ""))
    assert ssh_target("605c0ca8", None, snap) == A
    assert ssh_target("nginx@6666.service", "nginx@6666.service", snap) == C
    assert ssh_target("e2d9", "e2d9.service", snap, machine_only=True) == C
    assert ssh_target("e2d9", "e2d9.service", snap, unit_only=True) == A
    cases = [
        ("605c", None, {}, "2 machines match '605c'"),
        ("nope.service", "nope.service", {}, "could not find matching unit or machine"),
        ("everywhere.service", "everywhere.service", {}, "global unit"),
        ("idle.service", "idle.service", {}, "not scheduled on any machine"),
        ("nope.service", "nope.service", {"unit_only": True}, "Unit nope.service does not"),
        ("e2d9.service", "e2d9.service", {"machine_only": True}, "no machine matches"),
    ]
    for arg, unit, flags, words in cases:
        with pytest.raises(BadInput, match=words):
            ssh_target(arg, unit, snap, **flags)
    with pytest.raises(BadInput, match="ambiguous argument, both machine and unit"):
        ssh_target("e2d9", "e2d9.service", snap)  # machine C, and unit e2d9.service


def test_unit_machines_for_status_and_journal() -> None:
    snap = _snap(("hello.service", SVC, (B.id,), "active"),
                 ("everywhere.service", GLOBAL, (C.id, A.id), "active"),
                 ("idle.service", SVC, (), ""))
    assert unit_machines("hello.service", snap, "status") == [B]
    assert unit_machines("everywhere.service", snap, "status") == [A, C]
    for name, verb, words in [
        ("nope.service", "status", "Unit nope.service does not exist."),
        ("idle.service", "status", "does not appear to be loaded."),
        ("idle.service", "journal", "does not appear to be running."),
    ]:
        with pytest.raises(BadInput, match=words):
            unit_machines(name, snap, verb)


@pytest.mark.parametrize("endpoint, want", [
    ("unix:///var/run/fleet.sock", ("unix:///var/run/fleet.sock", False)),
    ("http://10.0.0.1:49153", ("10.0.0.1:49153", False)),
    ("https://10.0.0.1:49153/", ("10.0.0.1:49153", True)),
])
def test_parse_endpoint(endpoint: str, want: tuple[str, bool]) -> None:
    assert parse_endpoint(endpoint) == want


def test_explain_tls_failures() -> None:
    verify = "Ssl handshake failed: SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED: unable to get"
    assert "server's certificate is not trusted" in str(explain(verify, True))
    assert "requires a client certificate" in str(explain("Socket closed", True, TlsFiles()))
    assert "does the server require TLS" in str(explain("Socket closed", False))
    assert "does not speak TLS" in str(explain("SSL: WRONG_VERSION_NUMBER", True))
    assert explain("Connection refused", True) is None
    assert "not trusted" in str(_tls_reason("x: CERTIFICATE_VERIFY_FAILED: self signed: y"))
    assert _tls_reason("Unwrap failed (TSI_DATA_CORRUPTED)") == (
        "TLS: etcd refused our client certificate")
    assert _tls_reason("connection refused") is None


def test_lab_core_user_added_to_copies_of_the_machines_files() -> None:
    passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:500:500::/home/alice:/bin/sh\n"
    shadow = "root:*:1:0:99999:7:::\nalice:!:1:0:99999:7:::\n"
    group = "root:x:0:\nadm:x:4:syslog\nsudo:x:27:\nalice:x:500:\nsystemd-journal:x:999:\n"
    p, s, g, uid, gid = user_files(passwd, shadow, group)
    assert (uid, gid) == (501, 501)  # 500 is taken
    assert p.splitlines()[-1] == "core:x:501:501:CoreOS Admin:/home/core:/bin/bash"
    assert p.startswith(passwd) and s.startswith(shadow)
    assert s.splitlines()[-1].startswith("core:*:")  # no password: keys only
    lines = g.splitlines()
    assert "adm:x:4:syslog,core" in lines and "sudo:x:27:core" in lines
    assert "systemd-journal:x:999:core" in lines and "core:x:501:" in lines
    assert "fleet:x:502:core" in lines
    # Idempotent: a core already there is replaced, not doubled.
    again = user_files(p, s, g)
    assert again[:3] == (p, s, g)


async def test_metrics_and_health_answers() -> None:
    registry = MemoryRegistry()
    lease = await registry.grant_lease(30)
    await registry.register_machine(A, lease)
    await registry.create_unit(make_unit_file("a.service", SVC), TargetState.LAUNCHED)
    await registry.create_unit(make_unit_file("b.service", SVC), TargetState.INACTIVE)
    metrics = Metrics(DaemonState(A.id, registered=lease.is_alive, leader=lambda: True,
                                  keepalive_failures=lambda: 2))
    metrics.observe_pass("agent")(0.01)
    metrics.observe_etcd("range", 0.002, True)
    metrics.observe_etcd("txn", 0.5, False)
    status, ctype, body = await _answer(metrics, registry, ["GET", "/metrics", "HTTP/1.1"])
    assert status == "200 OK" and ctype.startswith("text/plain; version=0.0.4")
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert values[("fleetpy_machines", ())] == 1
    assert values[("fleetpy_units", (("state", "launched"),))] == 1
    assert values[("fleetpy_units", (("state", "inactive"),))] == 1
    assert values[("fleetpy_units", (("state", "loaded"),))] == 0
    assert values[("fleetpy_engine_leader", ())] == 1
    assert values[("fleetpy_lease_keepalive_failures_total", ())] == 2
    assert values[("fleetpy_etcd_requests_total", (("method", "txn"), ("outcome", "error")))] == 1
    assert values[("fleetpy_reconcile_duration_seconds_count", (("loop", "agent"),))] == 1
    status, _, body = await _answer(metrics, registry, ["GET", "/health"])
    assert status == "200 OK"
    assert json.loads(body) == {"machine": A.id, "registered": True, "etcd": True,
                                "leader": True}
    await lease.revoke()
    assert (await _answer(metrics, registry, ["GET", "/health"]))[0].startswith("503")
    assert (await _answer(metrics, registry, ["GET", "/x"]))[0].startswith("404")
    assert (await _answer(metrics, registry, ["POST", "/metrics"]))[0].startswith("405")
    await registry.close()


def test_fd_forward_proxies_stdin_and_stdout(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import threading

    path = str(tmp_path / "echo.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    done = subprocess.run([sys.executable, "-m", "fleetpy.ctl", "fd-forward", path],
                          input=b"hello fleet\n", capture_output=True, timeout=20, check=False)
    server.close()
    assert (done.returncode, done.stdout) == (0, b"HELLO FLEET\n")
    missing = subprocess.run([sys.executable, "-m", "fleetpy.ctl", "fd-forward",
                              str(tmp_path / "none.sock")], capture_output=True, text=True,
                             timeout=20, check=False)
    assert missing.returncode == 1 and "cannot connect to" in missing.stderr
