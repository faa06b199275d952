"""The seed's part 3 on a lab of its own: a load balancer reconfigured from etcd.

Lab ``flpart3`` (172.17.62.0/24), 3 hosts. unit-files/part3: two web servers
(webserver@8081/8082, each with its discovery unit registering ``ip:port``
under /services/web/ on a kept-alive lease), and nginx-lb (a real nginx on
port 80) with fleetpy-confd beside it (nginx-lb-confd). Requests go through
the load balancer from this machine while a web server stops and starts again
and while the whole etcd cluster is stopped.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetpy.lab import Lab
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import UNIT_FILES, active_on, eventually, fleetctl, ok, running

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

PART3 = UNIT_FILES / "part3"
WEB = ["webserver@8081.service", "webserver@8082.service"]
LB = ["nginx-lb.service", "nginx-lb-confd.service"]
FOLLOW = 1.0  # s from an etcd key change to nginx's config file following it
MAX_REQUESTS = 600  # the request loop's bound


@dataclass
class Balancer:
    lab: Lab
    host: str  # where nginx-lb runs
    ip: str
    backends: dict[str, str]  # unit -> "ip:port" it registers

    @property
    def conf(self) -> Path:
        """nginx-lb's config file, seen from here through its host's root."""
        pid = next(h.pid for h in self.lab.hosts if h.name == self.host)
        return Path(f"/proc/{pid}/root/run/nginx-lb/nginx.conf")

    def servers(self) -> set[str]:
        try:
            text = self.conf.read_text()
        except FileNotFoundError:
            return set()
        return {line.split()[1].rstrip(";") for line in text.splitlines()
                if line.strip().startswith("server ") and "{" not in line}

    def nginx_pids(self) -> tuple[str, list[str]]:
        """(master PID, worker PIDs) of nginx-lb in its host."""
        master = ok(self.lab.exec(self.host, ["systemctl", "show", "-p", "MainPID", "--value",
                                              "nginx-lb.service"])).strip()
        workers = self.lab.exec(self.host, ["pgrep", "-P", master]).stdout.split()
        return master, sorted(workers)


def page(ip: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{ip}/", timeout=timeout) as resp:
        return str(resp.read().decode())


@pytest.fixture(scope="module")
def lb() -> Iterator[Balancer]:
    with own_lab("flpart3", "172.17.62.0/24", hosts=3, etcd_members=3) as lab:
        instances = sorted(str(p) for p in (PART3 / "instances").iterdir())
        ok(fleetctl(lab, "start", *instances))
        units = [n for w in WEB for n in (w, w.replace("webserver@", "webserver-discovery@"))]
        where = eventually(lambda: running(lab, units), what="web servers and discovery")
        ip_of = {h.name: h.ip for h in lab.hosts}
        backends = {w: f"{ip_of[where[w]]}:{w.split('@')[1].split('.')[0]}" for w in WEB}
        ok(fleetctl(lab, "start", *(str(PART3 / u) for u in LB)))
        at = eventually(lambda: running(lab, LB), what="nginx-lb and its confd")
        assert at["nginx-lb.service"] == at["nginx-lb-confd.service"]  # MachineOf
        balancer = Balancer(lab, at["nginx-lb.service"], ip_of[at["nginx-lb.service"]], backends)
        eventually(lambda: balancer.servers() == set(backends.values()),
                   what="both web servers in nginx-lb's config")
        yield balancer


class Requests(threading.Thread):
    """GET / through the load balancer, one new connection each, until stopped."""

    def __init__(self, ip: str) -> None:
        super().__init__(daemon=True)
        self.ip = ip
        self.done = threading.Event()
        self.answers: list[tuple[float, str]] = []  # (when it was sent, the page)
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.done.is_set() and len(self.answers) + len(self.failures) < MAX_REQUESTS:
            sent = time.monotonic()
            try:
                self.answers.append((sent, page(self.ip)))
            except OSError as e:
                self.failures.append(f"{sent:.2f}: {e}")
            time.sleep(0.02)

    def since(self, moment: float) -> list[str]:
        return [text for sent, text in list(self.answers) if sent > moment]


@dataclass
class KeyWatch:
    """``etcdctl watch --prefix /services/web/`` from this machine: when each change came,
    and nginx-lb's config file polled every 10 ms: when its server list changed."""

    balancer: Balancer
    keys: list[tuple[float, str, str]] = field(default_factory=list)  # (t, PUT|DELETE, key)
    files: list[tuple[float, set[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        env = {**os.environ, **self.balancer.lab.env()}
        self.proc = subprocess.Popen(["etcdctl", "watch", "--prefix", "/services/web/",
                                      "-w", "json"], stdout=subprocess.PIPE, text=True, env=env)
        self.stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._poll, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.monotonic()
            for ev in json.loads(line).get("Events") or []:
                key = base64.b64decode(ev["kv"]["key"]).decode()
                self.keys.append((now, "DELETE" if ev.get("type") == 1 else "PUT", key))

    def _poll(self) -> None:
        last: set[str] | None = None
        while not self.stop.is_set():
            now, servers = time.monotonic(), self.balancer.servers()
            if servers != last:
                self.files.append((now, servers))
                last = servers
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.proc.terminate()
        self.proc.wait(5)

    def followed(self, kind: str, key: str, addr: str) -> float:
        """Seconds from the ``kind`` event of ``key`` to the file (not) listing ``addr``."""
        when = next(t for t, k, name in self.keys if k == kind and name == key)
        want = kind == "PUT"
        seen = next(t for t, servers in self.files if t >= when and (addr in servers) == want)
        return seen - when


def test_the_lb_follows_a_web_server_out_and_back_without_a_failed_request(
        lb: Balancer) -> None:
    lab = lb.lab
    master, workers = lb.nginx_pids()
    assert master != "0" and workers
    stopped, other = WEB
    addr, other_addr = lb.backends[stopped], lb.backends[other]
    key = f"/services/web/{stopped.split('@')[1].split('.')[0]}"
    watch = KeyWatch(lb)
    load = Requests(lb.ip)
    load.start()
    try:
        eventually(lambda: len(load.answers) >= 20, what="20 answers")
        before = {text.strip() for _, text in load.answers}
        assert len(before) == 2, before  # both backends answer
        assert any(addr in text for text in before) and any(other_addr in text for text in before)

        ok(fleetctl(lab, "stop", stopped))
        eventually(lambda: addr not in lb.servers(), timeout=5, every=0.05,
                   what=f"{addr} out of nginx-lb's config")
        host = next(h.name for h in lab.hosts if h.ip == addr.split(":")[0])
        eventually(lambda: active_on(lab, host, stopped) == "inactive", what="it stopped")
        out_at = time.monotonic()
        eventually(lambda: len(load.since(out_at)) >= 20, what="20 answers without it")
        assert all(other_addr in text for text in load.since(out_at))

        ok(fleetctl(lab, "start", stopped))
        eventually(lambda: addr in lb.servers(), timeout=10, every=0.05,
                   what=f"{addr} back in nginx-lb's config")
        back_at = time.monotonic()
        eventually(lambda: any(addr in t for t in load.since(back_at)), timeout=10,
                   what=f"answers from {addr} again")
    finally:
        load.done.set()
        load.join(30)
        watch.close()
    assert not load.failures, f"{len(load.failures)} failed requests: {load.failures[:5]}"
    assert len(load.answers) < MAX_REQUESTS  # the scenario ended within the bound
    out = watch.followed("DELETE", key, addr)
    back = watch.followed("PUT", key, addr)
    print(f"config followed the key in {out:.2f}s (removed) and {back:.2f}s (added); "
          f"{len(load.answers)} requests, none failed")
    assert out < FOLLOW and back < FOLLOW, (out, back)
    # Graceful reloads: the same master, new workers.
    master_after, workers_after = lb.nginx_pids()
    assert master_after == master
    assert not set(workers_after) & set(workers)


def confd_journal(lb: Balancer) -> str:
    return ok(lb.lab.exec(lb.host, ["journalctl", "-u", "nginx-lb-confd.service", "-o", "cat",
                                    "--no-pager"]))


def test_with_etcd_stopped_the_lb_serves_its_last_good_config(lb: Balancer) -> None:
    lab = lb.lab
    conf = lb.conf.read_text()
    master, _ = lb.nginx_pids()
    lab.etcd_stop(None)
    try:
        eventually(lambda: "retrying quietly while it fails" in confd_journal(lb), timeout=20,
                   what="confd's watch failing (etcd is down)")
        pages = [page(lb.ip) for _ in range(40)]
        assert {p.split(" (")[1].rstrip(")\n") for p in pages} == set(lb.backends.values())
        assert lb.conf.read_text() == conf
        assert ok(lab.exec(lb.host, ["systemctl", "is-active", *LB])).split() == ["active"] * 2
    finally:
        lab.etcd_start(None)
    # Back: the watch resumed by itself (no restart), and follows changes again.
    stopped = WEB[1]
    addr = lb.backends[stopped]
    ok(fleetctl(lab, "stop", stopped))
    eventually(lambda: addr not in lb.servers(), timeout=10, every=0.05,
               what=f"{addr} out of nginx-lb's config after etcd came back")
    ok(fleetctl(lab, "start", stopped))
    eventually(lambda: lb.servers() == set(lb.backends.values()), timeout=10, every=0.05,
               what="both web servers listed again")
    assert lb.nginx_pids()[0] == master
    journal = confd_journal(lb)
    assert "watch /services/web: back after" in journal
    assert journal.count(": watching /services/web on ") == 1  # confd never restarted


def test_a_config_nginx_refuses_is_never_swapped_in(lb: Balancer) -> None:
    """A key nginx -t refuses (port 99999): check_cmd stops it on the staged file."""
    lab = lb.lab
    env = {**os.environ, **lab.env()}
    conf = lb.conf.read_text()
    put = ["etcdctl", "put", "/services/web/bogus", "172.17.62.250:99999"]
    subprocess.run(put, env=env, check=True, capture_output=True, timeout=30)
    try:
        eventually(lambda: "invalid port in upstream" in confd_journal(lb), timeout=10,
                   what="confd's check failing")
        assert lb.conf.read_text() == conf
        assert not [p for p in lb.conf.parent.iterdir() if p.name.startswith(".nginx.conf")]
        assert {page(lb.ip).split(" (")[1].rstrip(")\n") for _ in range(6)} == set(
            lb.backends.values())
    finally:
        subprocess.run(["etcdctl", "del", "/services/web/bogus"], env=env, check=True,
                       capture_output=True, timeout=30)


def test_a_watch_on_a_member_that_lost_its_leader_does_not_stay_silent(lb: Balancer) -> None:
    """The two etcd members confd's watch is not on stop: its member has no leader
    (no quorum). The watch requires one (hasleader=true), so etcd cancels it and confd
    says so; a watch without that would stay open on the member, silently stale."""
    lab = lb.lab
    journal = confd_journal(lb)
    switches = [line.split("now using ")[1].split()[0] for line in journal.splitlines()
                if "etcd: now using " in line]
    using = switches[-1] if switches else lab.etcd_endpoints[0]
    members = {m.client_url: m.name for m in lab.status()[1]}
    others = [name for url, name in members.items() if url != using]
    assert len(others) == 2, (using, members)
    failures = journal.count("retrying quietly while it fails")
    backs = journal.count("watch /services/web: back after")
    for name in others:
        lab.etcd_stop(name)
    try:
        eventually(lambda: confd_journal(lb).count("retrying quietly while it fails") > failures,
                   timeout=20, what=f"confd's watch on {using} cancelled (no leader)")
        assert {page(lb.ip).split(" (")[1].rstrip(")\n") for _ in range(6)} == set(
            lb.backends.values())
    finally:
        lab.etcd_start(None)
    eventually(lambda: confd_journal(lb).count("watch /services/web: back after") > backs,
               timeout=20, what="confd's watch back")
