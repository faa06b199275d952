"""``fleetlab up --discovery``: the members bootstrap through a discovery URL.

The seed's CoreOS cluster found its members through https://discovery.etcd.io:
``curl https://discovery.etcd.io/new?size=3`` makes a new token, and every
member started with ``--discovery <url>`` registers itself there and waits
until ``size`` members have. There is no internet here, so the lab runs the
service itself: a single-member etcd of its own ("discovery", with the v2 API,
on the bridge at port 2379, peer 2380, data in ``<state>/etcd/discovery``),
on which it makes a token directory the way discovery.etcd.io does:
``PUT /v2/keys/discovery/<token>/_config/size value=N``. The discovery URL is
``http://<gateway>:2379/v2/keys/discovery/<token>``; members infra1..N start
with ``--discovery=<url>`` and no ``--initial-cluster``.

A member started later with the same URL finds the directory full. etcd 3.4
then does what ``--discovery-fallback`` says: ``exit`` (refused: "discovery:
cluster is full") or ``proxy``, its default (a v2-only HTTP proxy to the
members). ``fleetlab discovery-join`` starts such a member and reports which.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fleetpy.lab import cgroups as lab_cgroups
from fleetpy.lab import etcd, procs
from fleetpy.lab import secure as lab_secure
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import DiscoveryRecord, LabConfig, LabState, MemberRecord

log = logging.getLogger("fleetpy.lab")

NAME = "discovery"
CLIENT_PORT = 2379
PEER_PORT = 2380
FALLBACKS = ("proxy", "exit")  # etcd 3.4's --discovery-fallback values; proxy is its default
JOIN_TIMEOUT = 20.0
FULL = "cluster is full"  # etcd's error: v2discovery.ErrFullCluster
PROXY = "falling back to proxy"  # etcd's log line when it becomes a proxy instead
SERVING = "proxy started listening on client requests"  # ... and once it serves as one


def server_record(cfg: LabConfig) -> MemberRecord:
    return MemberRecord(NAME, 0, f"http://{cfg.gateway}:{CLIENT_PORT}",
                        f"http://{cfg.gateway}:{PEER_PORT}")


def start_server(cfg: LabConfig, cgroups: Sequence[Path]) -> MemberRecord:
    """Start the lab's discovery service and wait until it serves."""
    rec = server_record(cfg)
    data = cfg.member_dir(NAME)
    data.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        "etcd",
        f"--name={NAME}",
        f"--data-dir={data}",
        "--enable-v2",  # discovery speaks the v2 keys protocol
        f"--listen-client-urls={rec.client_url}",
        f"--advertise-client-urls={rec.client_url}",
        f"--listen-peer-urls={rec.peer_url}",
        f"--initial-advertise-peer-urls={rec.peer_url}",
        f"--initial-cluster={NAME}={rec.peer_url}",
        f"--initial-cluster-token=fleetlab-{cfg.name}-discovery",
        "--logger=zap",
        "--log-outputs=stderr",
    ]
    rec = replace(rec, proc=procs.spawn(argv, etcd.log_path(cfg, NAME), cgroups))
    etcd.wait_healthy(cfg, [rec], timeout=15.0)
    return rec


def _v2(url: str, method: str = "GET", value: str | None = None) -> dict[str, Any]:
    data = None if value is None else urllib.parse.urlencode({"value": value}).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=5.0) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise LabError(f"discovery service: {method} {url}: HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise LabError(f"discovery service: {method} {url}: {exc}") from None


def new_url(server: MemberRecord, size: int) -> str:
    """A new discovery URL for ``size`` members: discovery.etcd.io's ``/new?size=N``."""
    url = f"{server.client_url}/v2/keys/discovery/{secrets.token_hex(16)}"
    _v2(f"{url}/_config/size", "PUT", str(size))
    return url


def config_size(url: str) -> int | None:
    """The URL's ``_config/size``; None if it has none."""
    node = _v2(f"{url}/_config/size").get("node", {})
    return int(node["value"]) if "value" in node else None


def registered(url: str) -> dict[str, str]:
    """The members registered at ``url``: member id (hex) -> "name=peer-url"."""
    nodes = _v2(url).get("node", {}).get("nodes", [])
    return {n["key"].rsplit("/", 1)[-1]: n.get("value", "") for n in nodes if not n.get("dir")}


def start_cluster(
    cfg: LabConfig,
    state: LabState,
    cgroups: Sequence[Path],
    extra: Sequence[str],
    save: Callable[[LabState], None],
) -> LabState:
    """Start the discovery service, make a URL of ``len(state.members)``, start every
    member with it (all at once: each waits there until all have registered)."""
    server = start_server(cfg, cgroups)
    state = replace(state, discovery=DiscoveryRecord("", len(state.members), server))
    save(state)
    url = new_url(server, len(state.members))
    state = replace(state, discovery=DiscoveryRecord(url, len(state.members), server))
    save(state)
    log.info("discovery service %s: new discovery URL %s (size %d)", server.client_url, url,
             len(state.members))
    members = tuple(etcd.start(cfg, m, "", "", cgroups, extra, discovery=url)
                    for m in state.members)
    state = replace(state, members=members)
    save(state)
    return state


def _outcome(cfg: LabConfig, rec: MemberRecord, deadline: float) -> str:
    """"full" if etcd exited because the cluster is full, "proxy" once it serves as one."""
    assert rec.proc is not None
    logfile = etcd.log_path(cfg, rec.name)
    while True:
        text = logfile.read_text(errors="replace") if logfile.exists() else ""
        if not rec.proc.alive():
            return "full" if FULL in text else "exited"
        if PROXY in text and SERVING in text:
            return "proxy"
        if time.monotonic() > deadline:
            return "timeout"
        time.sleep(0.05)


def join(
    cfg: LabConfig,
    state: LabState,
    fallback: str,
    save: Callable[[LabState], None],
) -> tuple[str, LabState]:
    """Start one more member with the lab's discovery URL, as etcd 3.4 would be started
    by hand; return what it became (a sentence) and the new state. Refused: LabError."""
    disc = state.discovery
    if disc is None:
        raise LabError(f"lab {cfg.name} was not bootstrapped through discovery (`fleetlab up "
                       "--discovery`): `fleetlab etcd-add` adds a member")
    if fallback not in FALLBACKS:
        raise LabError(f"--fallback={fallback}: choose {' or '.join(FALLBACKS)}")
    used = {m.index for m in (*state.members, *disc.proxies)}
    index = next(i for i in range(1, len(used) + 2) if i not in used)
    rec = etcd.record(cfg, index, bool(state.secure))
    extra = lab_secure.etcd_args(cfg, state.secure) if state.secure else []
    rec = etcd.start(cfg, rec, "", "", lab_cgroups.create(f"{cfg.cgroup}/etcd"),
                     [*extra, f"--discovery-fallback={fallback}"], discovery=disc.url)
    outcome = _outcome(cfg, rec, time.monotonic() + JOIN_TIMEOUT)
    count = len(registered(disc.url))
    if outcome == "proxy":
        state = replace(state, discovery=replace(disc, proxies=(*disc.proxies, rec)))
        save(state)
        return (f"{rec.name}: discovery cluster is full ({count} of size {disc.size} "
                f"registered); etcd runs as a proxy to the members (v2 API only) on "
                f"{rec.client_url}, not as a member"), state
    why = etcd.tail(etcd.log_path(cfg, rec.name))
    etcd.stop([rec])
    shutil.rmtree(cfg.member_dir(rec.name), ignore_errors=True)
    etcd.log_path(cfg, rec.name).unlink(missing_ok=True)
    if outcome == "full":
        raise LabError(f"{rec.name} refused: discovery: {FULL} ({count} of size {disc.size} "
                       f"registered at {disc.url}); etcd exited (--discovery-fallback=exit). "
                       "`fleetlab etcd-add` adds a member to the running cluster")
    what = "exited" if outcome == "exited" else f"neither joined nor proxied in {JOIN_TIMEOUT:.0f}s"
    raise LabError(f"{rec.name} started with the discovery URL {what}: {why}")


def describe(state: LabState) -> list[str]:
    """Lines for ``fleetlab status``: the discovery URL and its registrations, proxies."""
    disc = state.discovery
    if disc is None:
        return []
    alive = disc.server.proc is not None and disc.server.proc.alive()
    try:
        count = f"{len(registered(disc.url))} registered" if alive else "service stopped"
    except LabError:
        count = "service not answering"
    lines = [f"DISCOVERY  {disc.url}  (size {disc.size}, {count})"]
    for p in disc.proxies:
        up = p.proc is not None and p.proc.alive()
        lines.append(f"PROXY      {p.name}  {p.client_url}  "
                     f"{'pid ' + str(p.proc.pid) if up and p.proc else 'stopped'}")
    return lines


def processes(state: LabState) -> list[MemberRecord]:
    """The discovery etcd and any proxies: what ``down`` stops."""
    disc = state.discovery
    return [] if disc is None else [disc.server, *disc.proxies]
