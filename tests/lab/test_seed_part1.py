"""The seed's part 1 on a lab, command for command: etcd's v2 API on the seed's ports.

Real etcd members of a lab of its own (flseed), run by ``fleetlab``: clients on
4001-4003 and peers on 7001-7003 of the lab's bridge address, and on a loopback
address as well. The default lab uses 127.0.0.1 (the seed's address); this lab
uses 127.0.58.1 (``local_ip``) so it never collides with a default lab or
anything else on 127.0.0.1:4001. The seed's commands run as printed, with only
the address changed; outputs are compared where they are stable (actions, keys,
values, messages), not indexes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetpy.lab import Lab, LabError, state
from fleetpy.lab.cli import main
from tests.lab.conftest import fresh_lab, require_root, session_lock

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

NAME, SUBNET = "flseed", "172.17.58.0/24"
GW = "172.17.58.1"
LOCAL = "127.0.58.1"
HOST = f"http://{LOCAL}:4001"  # the seed's http://127.0.0.1:4001
SEED_ECHO = ('echo "\\"$ETCD_WATCH_KEY\\" key was updated to \\"$ETCD_WATCH_VALUE\\" '
             'value by \\"$ETCD_WATCH_ACTION\\" action"')


@pytest.fixture(scope="module")
def seed() -> Iterator[Lab]:
    require_root()
    logging.getLogger("fleetpy.lab").setLevel(logging.INFO)
    with session_lock(NAME):
        lab = fresh_lab(NAME, SUBNET)
        # 127.0.58.1:4003 is taken while the lab boots: infra3 must do without it
        with socket.socket() as taken:
            taken.bind((LOCAL, 4003))
            taken.listen()
            lab.up(hosts=1, etcd_members=3, local_ip=LOCAL)
        try:
            yield lab
        finally:
            lab.down()


def v2env(lab: Lab) -> dict[str, str]:
    """eval "$(fleetlab env)"; export ETCDCTL_API=2"""
    return {**os.environ, **lab.env(), "ETCDCTL_API": "2"}


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}: {done.stderr}"
    return done.stdout


def ctl2(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["etcdctl", *args], v2env(lab))


def curl(*args: str) -> dict[str, object]:
    out = ok(run(["curl", "-sS", *args]))
    data: dict[str, object] = json.loads(out)
    return data


def node(event: dict[str, object]) -> dict[str, object]:
    got = event["node"]
    assert isinstance(got, dict), event
    return got


class Lines:
    """A long-running command's stdout, line by line, read as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> None:
        """Kill it if it still runs; return once all it printed is in ``lines``."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.reader.join(5)


def until(done: Callable[[], bool], poke: Callable[[int], object], what: str,
          timeout: float = 20.0) -> None:
    """Call ``poke(n)`` (another client's change) until ``done()``: a watcher that
    registered after a change waits for the next one."""
    deadline = time.monotonic() + timeout
    n = 0
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        poke(n)
        n += 1
        for _ in range(10):
            if done():
                return
            time.sleep(0.03)


def test_members_serve_v2_on_the_seeds_ports(seed: Lab, caplog: pytest.LogCaptureFixture) -> None:
    st = state.load(seed.cfg)
    assert st is not None
    got = {m.name: (m.client_url, m.peer_url, m.local_url) for m in st.members}
    assert got == {
        "infra1": (f"http://{GW}:4001", f"http://{GW}:7001", f"http://{LOCAL}:4001"),
        "infra2": (f"http://{GW}:4002", f"http://{GW}:7002", f"http://{LOCAL}:4002"),
        "infra3": (f"http://{GW}:4003", f"http://{GW}:7003", ""),  # its port was taken
    }
    for url in [*seed.etcd_endpoints, f"http://{LOCAL}:4001", f"http://{LOCAL}:4002"]:
        listing = curl(f"{url}/v2/keys/")
        assert listing["action"] == "get" and node(listing)["dir"] is True, url
    # fleetd (v3) works as before: the host's machine registered
    machines = seed.exec("core-01", ["fleetctl", "list-machines", "--no-legend"])
    assert machines.returncode == 0 and len(machines.stdout.splitlines()) == 1, machines


def test_curl_put_get_and_waits(seed: Lab) -> None:
    put = curl("-L", f"{HOST}/v2/keys/app01/username", "-XPUT", "-d", "value=alex")
    assert put["action"] == "set"
    assert {k: node(put)[k] for k in ("key", "value")} == {"key": "/app01/username",
                                                             "value": "alex"}
    before = int(str(node(put)["modifiedIndex"]))
    listing = curl(f"{HOST}/v2/keys/app01")
    assert [n["key"] for n in node(listing)["nodes"]] == ["/app01/username"]  # type: ignore
    assert node(curl(f"{HOST}/v2/keys/app01/username"))["value"] == "alex"

    for url in (f"{HOST}/v2/keys/app01/username?wait=true",
                f"{HOST}/v2/keys/app01?wait=true&recursive=true"):
        waiting = Lines(["curl", "-sS", url])
        try:
            def other_client(n: int) -> object:  # the seed's "from another process"
                return curl("-L", f"{HOST}/v2/keys/app01/username", "-XPUT",
                            "-d", f"value=romain{n}")
            until(waiting.exited, other_client, f"curl {url}")
        finally:
            waiting.stop()
        event = json.loads("".join(waiting.lines))
        assert event["action"] == "set" and event["node"]["key"] == "/app01/username"
        assert event["node"]["value"].startswith("romain")
        assert event["prevNode"]["key"] == "/app01/username"
        assert event["node"]["modifiedIndex"] > before  # it waited for a change
        before = event["node"]["modifiedIndex"]


def settles(read: Callable[[], str], want: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := read()) != want:
        assert time.monotonic() < deadline, f"{got!r} != {want!r}"
        time.sleep(0.05)


def test_etcdctl_v2_basics(seed: Lab) -> None:
    health = ok(ctl2(seed, "cluster-health")).splitlines()
    assert health[-1] == "cluster is healthy"
    assert len(health) == 4
    for line in health[:3]:
        assert re.fullmatch(rf"member [0-9a-f]+ is healthy: got healthy result from "
                            rf"http://{GW}:400[123]", line), line
    assert ok(ctl2(seed, "set", "/app01/username", "alex")) == "alex\n"
    # v2 reads are answered by whichever member etcdctl picks, from its own copy
    settles(lambda: ok(ctl2(seed, "ls", "/app01")), "/app01/username\n")
    settles(lambda: ok(ctl2(seed, "get", "/app01/username")), "alex\n")
    missing = ctl2(seed, "get", "/app01/nobody")
    assert missing.returncode != 0 and "Key not found (/app01/nobody)" in missing.stderr


def test_the_same_from_inside_a_host(seed: Lab) -> None:
    """The seed's part 2: "we could do exactly the same demo" inside a CoreOS machine;
    here etcd is $ETCDCTL_ENDPOINTS (the bridge address) from /etc/environment."""
    script = ('. /etc/environment; export ETCDCTL_API=2 ETCDCTL_ENDPOINTS; '
              'etcdctl set /app01/username from-core-01 && etcdctl cluster-health && '
              'curl -sL "${ETCDCTL_ENDPOINTS%%,*}/v2/keys/app01/username"')
    done = seed.exec("core-01", ["sh", "-c", script])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "from-core-01" and "cluster is healthy" in lines
    assert node(json.loads(lines[-1]))["value"] == "from-core-01"


def test_watch_forever_recursive_sees_two_changes(seed: Lab) -> None:
    watch = Lines(["etcdctl", "watch", "/app01", "--forever", "--recursive"], v2env(seed))
    try:
        until(lambda: len(watch.lines) >= 4,
              lambda n: ok(ctl2(seed, "set", "/app01/username", f"alex{n}")),
              "two changes seen by etcdctl watch")
        assert watch.proc.poll() is None  # --forever: still watching
    finally:
        watch.stop()
    first, second = watch.lines[0:2], watch.lines[2:4]
    for event in (first, second):
        assert event[0] == "[set] /app01/username" and event[1].startswith("alex"), watch.lines
    assert first[1] != second[1]


def test_exec_watch_and_swap_with_value(seed: Lab) -> None:
    watch = Lines(["etcdctl", "exec-watch", "--recursive", "/foo-service", "--",
                   "sh", "-c", SEED_ECHO], v2env(seed))
    key = "/foo-service/container3"
    try:
        until(lambda: bool(watch.lines),
              lambda n: ok(ctl2(seed, "set", key, "localhost:2222")),
              "exec-watch running its command")
        assert watch.lines[0] == (
            f'"{key}" key was updated to "localhost:2222" value by "set" action')
        seen = len(watch.lines)
        swap = ["set", key, "localhost:3333", "--swap-with-value", "localhost:2222"]
        assert ok(ctl2(seed, *swap)) == "localhost:3333\n"
        again = ctl2(seed, *swap)
        assert again.returncode != 0
        assert again.stderr.strip().startswith(
            "Error:  101: Compare failed ([localhost:2222 != localhost:3333])"), again.stderr
        # a change after both: everything before it has been seen by then
        ok(ctl2(seed, "set", "/foo-service/marker", "m"))
        deadline = time.monotonic() + 10
        while not any("marker" in line for line in watch.lines) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.stop()
    assert watch.lines[seen:] == [
        f'"{key}" key was updated to "localhost:3333" value by "compareAndSwap" action',
        '"/foo-service/marker" key was updated to "m" value by "set" action',
    ]  # the failed swap triggered nothing


def newmember(data: Path, cluster: str, log: Path) -> subprocess.Popen[bytes]:
    """The seed's newmember/Procfile: infra4, client 4004, peer 7004 on the loopback
    address (the members all run on this machine, so they reach each other there)."""
    argv = ["etcd", "-name", "infra4", "--data-dir", str(data), "--enable-v2",
            "-listen-client-urls", f"http://{LOCAL}:4004", "-advertise-client-urls",
            f"http://{LOCAL}:4004", "-listen-peer-urls", f"http://{LOCAL}:7004",
            "-initial-advertise-peer-urls", f"http://{LOCAL}:7004",
            "-initial-cluster", cluster, "-initial-cluster-state", "existing"]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def replicated(url: str, key: str, value: str) -> None:
    """A v2 GET on a member answers from that member's copy: wait until it has
    caught up with the write (a new member may lag by a few entries)."""
    deadline = time.monotonic() + 10
    while (got := node(curl(f"{url}/v2/keys{key}"))["value"]) != value:
        assert time.monotonic() < deadline, f"{url} still has {got!r}, not {value!r}"
        time.sleep(0.05)


def members(lab: Lab) -> dict[str, str]:
    """`etcdctl member list` (v2): name -> its line ("unstarted": added, never started)."""
    out = {}
    for line in ok(ctl2(lab, "member", "list")).splitlines():
        name = re.search(r"name=(\S*)", line)
        out[name.group(1) if name else "unstarted"] = line
    return out


def retry_unhealthy(call: Callable[[], subprocess.CompletedProcess[str]]
                    ) -> subprocess.CompletedProcess[str]:
    """etcd refuses a membership change for 5 s after a member joined ("unhealthy")."""
    deadline = time.monotonic() + 20
    while True:
        done = call()
        if done.returncode == 0 or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def test_member_add_and_remove_as_the_seed_does(seed: Lab, tmp_path: Path) -> None:
    assert sorted(members(seed)) == ["infra1", "infra2", "infra3"]
    added = ok(retry_unhealthy(lambda: ctl2(seed, "member", "add", "infra4",
                                            f"http://{LOCAL}:7004")))
    m = re.search(r"Added member named infra4 with ID ([0-9a-f]+) to cluster", added)
    assert m, added
    member_id = m.group(1)
    assert members(seed)["unstarted"] == f"{member_id}[unstarted]: peerURLs=http://{LOCAL}:7004"
    env = dict(re.findall(r'^(ETCD_\w+)="(.*)"$', added, re.M))
    assert env["ETCD_NAME"] == "infra4" and env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    assert f"infra4=http://{LOCAL}:7004" in env["ETCD_INITIAL_CLUSTER"].split(",")

    data, log = tmp_path / "infra4.etcd", tmp_path / "infra4.log"
    proc = newmember(data, env["ETCD_INITIAL_CLUSTER"], log)
    try:
        deadline = time.monotonic() + 30
        while f"clientURLs=http://{LOCAL}:4004" not in members(seed).get("infra4", ""):
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, members(seed)
            time.sleep(0.2)
        assert f"peerURLs=http://{LOCAL}:7004" in members(seed)["infra4"]
        assert members(seed)["infra4"].startswith(f"{member_id}: ")
        ok(ctl2(seed, "set", "/app01/username", "alex-for-infra4"))
        replicated(f"http://{LOCAL}:4004", "/app01/username", "alex-for-infra4")

        removed = ok(retry_unhealthy(lambda: ctl2(seed, "member", "remove", member_id)))
        assert removed.strip() == f"Removed member {member_id} from cluster"
        proc.wait(timeout=20)  # the fourth etcd process exits by itself
        assert "infra4" not in members(seed)
        assert "the member has been permanently removed from the cluster" in log.read_text()

        # started again on its data dir: refused, it exits again
        again = newmember(data, env["ETCD_INITIAL_CLUSTER"], tmp_path / "again.log")
        again.wait(timeout=30)
        assert "permanently removed" in (tmp_path / "again.log").read_text()
        # a pretender configured like it but never declared (fresh data): refused
        shutil.rmtree(data)
        pretender = newmember(data, env["ETCD_INITIAL_CLUSTER"], tmp_path / "fake.log")
        assert pretender.wait(timeout=30) != 0
        assert "member count is unequal" in (tmp_path / "fake.log").read_text()
        assert sorted(members(seed)) == ["infra1", "infra2", "infra3"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = members(seed).get("infra4") or members(seed).get("unstarted")
        if left:  # the test failed half-way: leave the cluster as it was
            retry_unhealthy(lambda: ctl2(seed, "member", "remove", left.split(":")[0][:16]))


def test_fleetlab_etcd_add_and_remove_in_one_step(seed: Lab,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    assert seed.etcd_add() == "infra4"
    listed = members(seed)["infra4"]
    assert f"peerURLs=http://{GW}:7004" in listed and f"clientURLs=http://{GW}:4004" in listed
    st = state.load(seed.cfg)
    assert st is not None
    rec = st.member("infra4")
    assert rec.local_url == f"http://{LOCAL}:4004"
    ok(ctl2(seed, "set", "/app01/username", "alex-for-infra4"))
    replicated(f"http://{LOCAL}:4004", "/app01/username", "alex-for-infra4")

    with caplog.at_level(logging.INFO, logger="fleetpy.lab"):
        seed.etcd_remove("infra4")
    assert any(re.fullmatch(r"etcd member infra4 removed: its etcd exited by itself after "
                            r"\d+\.\ds", m) for m in caplog.messages), caplog.messages
    assert rec.proc is not None and not rec.proc.alive()
    assert sorted(members(seed)) == ["infra1", "infra2", "infra3"]


def test_up_refuses_a_local_ip_that_is_not_loopback(seed: Lab, tmp_path: Path) -> None:
    # same subnet as the running lab: a broken check could not boot anything there either
    lab = Lab(name="flseedbad", state_dir=tmp_path / "state", subnet=SUBNET)
    try:
        with pytest.raises(LabError, match=r"--local-ip '172\.17\.58\.1': give an IPv4 loopback"):
            lab.up(hosts=1, local_ip=GW)
        assert not (tmp_path / "state").exists()
        cli = CliRunner().invoke(main, ["--name", "flseedbad", "--subnet", SUBNET, "--state-dir",
                                        str(tmp_path / "state"), "up", "--local-ip", "::1"])
        assert cli.exit_code == 1
        assert "fleetlab: --local-ip '::1': give an IPv4 loopback address" in cli.output
        assert not (tmp_path / "state").exists()
    finally:
        if lab.is_up():
            lab.down()
