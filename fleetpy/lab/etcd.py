"""The lab's static etcd cluster: members infra1..infraM on the bridge address.

Client port 4000+i and peer port 7000+i, as in the seed's Procfile; data in
``<state-dir>/etcd/<name>``, output in ``<state-dir>/etcd/<name>.log``.
Members serve the v2 API too (``--enable-v2``: the seed's ``curl .../v2/keys``
and ``ETCDCTL_API=2 etcdctl``), except in a --secure lab. The default lab's
members also listen on 127.0.0.1 at their client port where it is free
(``local_url``), so the seed's ``http://127.0.0.1:4001`` answers.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from fleetpy.lab import procs
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import DEFAULT_NAME, LabConfig, MemberRecord

log = logging.getLogger("fleetpy.lab")
LOCAL_IP = "127.0.0.1"

def record(cfg: LabConfig, index: int, tls: bool = False) -> MemberRecord:
    """Member ``index``; ``tls``: its client URL is https (a --secure lab)."""
    url = cfg.client_url(index)
    return MemberRecord(
        name=cfg.member_name(index),
        index=index,
        client_url=url.replace("http://", "https://", 1) if tls else url,
        peer_url=cfg.peer_url(index),
    )


def default_local_ip(cfg: LabConfig) -> str:
    """The loopback address members also serve clients on: 127.0.0.1 in the default
    lab (the seed's commands as printed), none in the others (they would collide)."""
    return LOCAL_IP if cfg.name == DEFAULT_NAME else ""


def check_local_ip(ip: str) -> str:
    """``ip`` if it is "" or an IPv4 loopback address (127.0.0.0/8), else a LabError."""
    if not ip:
        return ip
    try:
        if ipaddress.IPv4Address(ip).is_loopback:
            return ip
    except ValueError:
        pass
    raise LabError(f"--local-ip {ip!r}: give an IPv4 loopback address such as 127.0.0.1")


def port_free(ip: str, port: int) -> bool:
    """Whether etcd could listen on ``ip:port`` now (as Go does: SO_REUSEADDR, so
    connections of an earlier listener in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
            sock.listen(1)
        except OSError:
            return False
    return True


def with_local_url(rec: MemberRecord, ip: str) -> MemberRecord:
    """``rec`` also serving clients on ``ip`` at its client port, if that port is free
    there (checked now: a port taken later makes the member fail to start)."""
    if not ip:
        return rec
    url = urlsplit(rec.client_url)
    port = url.port or 0
    if not port_free(ip, port):
        log.info("etcd member %s: %s:%d is taken, so it serves clients on %s only",
                 rec.name, ip, port, rec.client_url)
        return rec
    return replace(rec, local_url=f"{url.scheme}://{ip}:{port}")


def client_listen_urls(rec: MemberRecord) -> str:
    return ",".join(u for u in (rec.client_url, rec.local_url) if u)


def v2_flags(rec: MemberRecord) -> list[str]:
    """The v2 API on a plain lab. A --secure lab (https) leaves it off: v2 has an
    auth of its own, which the lab does not set up, so v2 would be open to all."""
    return [] if rec.client_url.startswith("https://") else ["--enable-v2"]


def initial_cluster(members: Sequence[MemberRecord]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in members)


def log_path(cfg: LabConfig, name: str) -> Path:
    return cfg.member_dir(name).with_suffix(".log")


def start(
    cfg: LabConfig,
    rec: MemberRecord,
    cluster: str,
    state: str,
    cgroups: Sequence[Path],
    extra: Sequence[str] = (),
    discovery: str = "",
) -> MemberRecord:
    """Start one member process; ``state`` is etcd's initial-cluster-state, ``extra``
    more flags (TLS); with a ``discovery`` URL it bootstraps through that instead of
    ``cluster`` (discovery.py)."""
    data = cfg.member_dir(rec.name)
    data.parent.mkdir(parents=True, exist_ok=True)
    bootstrap = [f"--discovery={discovery}"] if discovery else [
        f"--initial-cluster-token=fleetlab-{cfg.name}",
        f"--initial-cluster={cluster}",
        f"--initial-cluster-state={state}",
    ]
    argv = [
        "etcd",
        f"--name={rec.name}",
        f"--data-dir={data}",
        f"--listen-client-urls={client_listen_urls(rec)}",
        f"--advertise-client-urls={rec.client_url}",
        f"--listen-peer-urls={rec.peer_url}",
        f"--initial-advertise-peer-urls={rec.peer_url}",
        *bootstrap,
        "--logger=zap",
        "--log-outputs=stderr",
        # fleetpy writes every unit's state changes: keep an hour of history, not all
        # of it (watches that fall behind the compaction re-list: registry/watch.py)
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=1h",
        *v2_flags(rec),
        *extra,
    ]
    proc = procs.spawn(argv, log_path(cfg, rec.name), cgroups)
    return replace(rec, proc=proc)


def start_cluster(
    cfg: LabConfig, recs: Sequence[MemberRecord], cgroups: Sequence[Path], extra: Sequence[str] = ()
) -> list[MemberRecord]:
    """Start a new cluster's members one after the other.

    A new member first asks its peers whether it was bootstrapped already,
    giving each 1 s to answer. Started together, every member finds its peers'
    ports open but not yet served and waits out both timeouts (2 s with three
    members). Started in turn, each finds the earlier ones serving and the
    later ones not listening at all, and goes on at once.
    """
    cluster = initial_cluster(recs)
    started = []
    for rec in recs:
        member = start(cfg, rec, cluster, "new", cgroups, extra)
        started.append(member)
        wait_serving_peers(cfg, member)
    return started


def _check_running(cfg: LabConfig, rec: MemberRecord) -> None:
    if rec.proc is not None and not rec.proc.alive():
        raise LabError(f"etcd member {rec.name} exited: {tail(log_path(cfg, rec.name))}")


def wait_serving_peers(cfg: LabConfig, rec: MemberRecord, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{rec.peer_url}/version", timeout=1.0):
                return
        except (OSError, ValueError):
            pass
        _check_running(cfg, rec)
        if time.monotonic() > deadline:
            raise LabError(f"etcd member {rec.name} not serving its peers after {timeout:.0f}s")
        time.sleep(0.01)


def exits_when_removed(rec: MemberRecord, timeout: float = 10.0) -> bool:
    """Whether ``rec``'s process ends by itself after ``member remove`` (etcd stops a
    member that learns it was removed), as in the seed; False: still running."""
    return rec.proc is None or not procs.wait_gone([rec.proc], timeout)


def stop(recs: Sequence[MemberRecord], sig: int = signal.SIGTERM) -> None:
    procs.stop([r.proc for r in recs if r.proc is not None], sig, timeout=5.0)


def healthy(url: str, timeout: float = 1.0, ctx: ssl.SSLContext | None = None) -> bool:
    """etcd's /health: true once the member is part of a cluster with a leader."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout, context=ctx) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


def is_leader(url: str, timeout: float = 1.0, ctx: ssl.SSLContext | None = None) -> bool | None:
    """Whether the member at ``url`` is the leader; None if it does not answer."""
    req = urllib.request.Request(f"{url}/v3/maintenance/status", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            status = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return bool(status.get("leader") == status.get("header", {}).get("member_id"))


def is_leader_etcdctl(url: str, env: Mapping[str, str]) -> bool | None:
    """``is_leader`` for a --secure lab (etcd's HTTP gateway wants a token there)."""
    try:
        status = json.loads(etcdctl([url], "endpoint", "status", "-w", "json", env=env))[0]
    except (LabError, ValueError, IndexError):
        return None
    return bool(status["Status"]["leader"] == status["Status"]["header"]["member_id"])


def wait_healthy(
    cfg: LabConfig,
    recs: Sequence[MemberRecord],
    timeout: float = 30.0,
    ctx: ssl.SSLContext | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    pending = list(recs)
    with ThreadPoolExecutor(max(len(recs), 1)) as pool:
        while pending:
            for rec in pending:
                _check_running(cfg, rec)
            ok = list(pool.map(lambda r: healthy(r.client_url, 0.5, ctx), pending))
            pending = [r for r, good in zip(pending, ok, strict=True) if not good]
            if pending and time.monotonic() > deadline:
                names = ", ".join(r.name for r in pending)
                raise LabError(f"etcd members {names} not healthy after {timeout:.0f}s; see logs")
            if pending:
                time.sleep(0.05)


def tail(path: Path, lines: int = 1) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def etcdctl(
    endpoints: Sequence[str],
    *args: str,
    retry_unhealthy: float = 0.0,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run etcdctl against ``endpoints``.

    etcd refuses membership changes ("unhealthy cluster") until its leader has
    been connected to a quorum for 5 s, which a fresh lab has not: with
    ``retry_unhealthy`` seconds, retry until then.
    """
    env = {**os.environ, "ETCDCTL_API": "3", **(env or {})}  # env: TLS and user (--secure)
    env.pop("ETCDCTL_ENDPOINTS", None)
    argv = ["etcdctl", f"--endpoints={','.join(endpoints)}", "--dial-timeout=3s", *args]
    deadline = time.monotonic() + retry_unhealthy
    while True:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, check=False, timeout=30
        )
        if "unhealthy cluster" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise LabError(f"etcdctl {' '.join(args)}: {why}")
    return done.stdout


@dataclass(frozen=True)
class Member:
    """A member as etcd lists it."""

    id: int
    peer_urls: tuple[str, ...]


def member_list(endpoints: Sequence[str], env: Mapping[str, str] | None = None) -> list[Member]:
    data = json.loads(etcdctl(endpoints, "member", "list", "-w", "json", env=env))
    return [Member(int(m["ID"]), tuple(m.get("peerURLs", []))) for m in data.get("members", [])]


def member_add(
    endpoints: Sequence[str], rec: MemberRecord, env: Mapping[str, str] | None = None
) -> str:
    """Announce ``rec`` to the cluster; return its ETCD_INITIAL_CLUSTER."""
    out = etcdctl(
        endpoints, "member", "add", rec.name, f"--peer-urls={rec.peer_url}", retry_unhealthy=15,
        env=env,
    )
    for line in out.splitlines():
        if line.startswith("ETCD_INITIAL_CLUSTER="):
            return line.split("=", 1)[1].strip('"')
    raise LabError(f"etcdctl member add {rec.name} printed no ETCD_INITIAL_CLUSTER")


def member_remove(
    endpoints: Sequence[str], rec: MemberRecord, env: Mapping[str, str] | None = None
) -> None:
    for m in member_list(endpoints, env):
        if rec.peer_url in m.peer_urls:
            etcdctl(endpoints, "member", "remove", f"{m.id:x}", retry_unhealthy=15, env=env)
            return


def remove_member(
    endpoints: Sequence[str], rec: MemberRecord, env: Mapping[str, str], wait: float = 10.0
) -> None:
    """``member remove``, then (as in the seed) its process exits by itself; one
    still running after ``wait`` seconds is stopped. (Its data dir is of no more
    use: etcd refuses a removed member's data.)"""
    running = rec.proc is not None and rec.proc.alive()
    member_remove(endpoints, rec, env)
    removed = time.monotonic()
    if not running:
        log.info("etcd member %s removed (it was not running)", rec.name)
    elif exits_when_removed(rec, wait):
        log.info("etcd member %s removed: its etcd exited by itself after %.1fs",
                 rec.name, time.monotonic() - removed)
    else:
        log.info("etcd member %s removed but still running after %.0fs: stopping it",
                 rec.name, wait)
    stop([rec])
