"""The lab as a Python object: what the CLI and the test suites drive.

``Lab`` is built here (up, down), reads its state and status; its other
commands are in api_hosts (hosts), api_etcd (etcd members) and api_faults
(faults, hollow machines), on api_base's LabBase.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

from fleetpy.lab import access, cgroups, etcd, fleetopts, network, status, teardown
from fleetpy.lab import discovery as lab_discovery
from fleetpy.lab import hosts as host_ops
from fleetpy.lab import secure as lab_secure
from fleetpy.lab.api_base import require_root
from fleetpy.lab.api_etcd import EtcdOps
from fleetpy.lab.api_faults import FaultOps
from fleetpy.lab.api_hosts import HostOps
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import MAX_HOSTS, MAX_MEMBERS, HostRecord, LabState, load, locked, save
from fleetpy.lab.status import HostStatus, MemberStatus

log = logging.getLogger("fleetpy.lab")
T = TypeVar("T")
R = TypeVar("R")

TOOLS = {
    "etcd": "apt-get install etcd-server",
    "etcdctl": "apt-get install etcd-client",
    "ip": "apt-get install iproute2",
    "unshare": "apt-get install util-linux",
    "nsenter": "apt-get install util-linux",
}


@dataclass(frozen=True)
class HostInfo:
    name: str
    machine_id: str
    ip: str
    pid: int | None  # its systemd (PID 1 inside), in the root pid namespace; None if stopped
    partitioned: bool = False  # `fleetlab partition`: cut off the network
    paused: bool = False  # `fleetlab pause`: every process frozen


def _parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    if not items:
        return []
    with ThreadPoolExecutor(min(len(items), 16)) as pool:
        return list(pool.map(fn, items))


class Lab(HostOps, EtcdOps, FaultOps):
    """One lab: etcd members infra1..M and hosts core-01..N on bridge flb-<name>.

    Every method that changes the lab holds its lock; errors a user can fix are
    ``LabError`` with a one-line message. Progress is logged to "fleetpy.lab",
    one line per decision.
    """

    # -- reading -----------------------------------------------------------------

    def is_up(self) -> bool:
        return teardown.alive(self.cfg)

    @property
    def hosts(self) -> list[HostInfo]:
        state = load(self.cfg)
        if state is None:
            return []
        return [
            HostInfo(h.name, h.machine_id, h.ip, host_ops.running_pid(h), h.partitioned, h.paused)
            for h in state.hosts
        ]

    @property
    def etcd_endpoints(self) -> list[str]:
        state = load(self.cfg)
        return [] if state is None else state.client_urls

    def env(self) -> dict[str, str]:
        """Variables that point fleetctl and etcdctl on this machine at the lab."""
        return access.client_env(self.cfg, self._state())

    # -- building and tearing down ----------------------------------------------

    def up(
        self,
        hosts: int = 3,
        etcd_members: int = 3,
        metadata: Mapping[str, str] | None = None,
        fleet_env: Mapping[str, str] | None = None,
        secure: str = "",
        discovery: bool = False,
        local_ip: str | None = None,
    ) -> None:
        """Boot the lab. ``metadata``: host name -> fleetd metadata ("region=us-east,disk=ssd");
        ``fleet_env``: extra FLEET_* settings of every fleetd ({"FLEET_AGENT_TTL": "5"});
        ``secure``: "cert" or "password" for etcd with TLS and auth (see secure.py);
        ``discovery``: members bootstrap through a discovery URL (see discovery.py);
        ``local_ip``: a loopback address etcd members also serve clients on, at their
        client ports where free (None: 127.0.0.1 for the default lab, none otherwise)."""
        require_root()
        mode = lab_secure.check_mode(secure)
        local = etcd.check_local_ip(
            etcd.default_local_ip(self.cfg) if local_ip is None else local_ip
        )
        self._preflight(hosts, etcd_members)
        names = [self.cfg.host_name(i) for i in range(1, hosts + 1)]
        meta = fleetopts.metadata_for(names, metadata or {})
        env = fleetopts.fleet_env(fleet_env or {})
        with locked(self.cfg):
            if teardown.alive(self.cfg):
                raise LabError(
                    f"lab {self.cfg.name} is already up: `fleetlab status` shows it, "
                    "`fleetlab down` stops it"
                )
            leftovers = teardown.leftovers(self.cfg)
            if leftovers:
                log.info("clearing leftovers of a dead lab: %s", ", ".join(leftovers))
                teardown.teardown(self.cfg)
            network.check_subnet_free(self.cfg)
            started = time.monotonic()
            try:
                self._build(hosts, etcd_members, meta, env, mode, local, discovery)
            except BaseException:
                log.info("up failed: removing what it started")
                teardown.teardown(self.cfg)
                raise
            log.info(
                "lab %s up: %d hosts, %d etcd members in %.1fs",
                self.cfg.name,
                hosts,
                etcd_members,
                time.monotonic() - started,
            )

    def _preflight(self, n_hosts: int, n_members: int) -> None:
        if not 1 <= n_hosts <= MAX_HOSTS:
            raise LabError(f"--hosts must be 1..{MAX_HOSTS}, not {n_hosts}")
        if not 1 <= n_members <= MAX_MEMBERS:
            raise LabError(f"--etcd-members must be 1..{MAX_MEMBERS}, not {n_members}")
        for tool, fix in TOOLS.items():
            if shutil.which(tool) is None:
                raise LabError(f"{tool} not found in PATH: install it ({fix})")
        if not os.access(host_ops.SYSTEMD, os.X_OK):
            raise LabError(f"systemd not found at {host_ops.SYSTEMD}: apt-get install systemd")

    def _build(
        self,
        n_hosts: int,
        n_members: int,
        meta: Mapping[str, str],
        env: Mapping[str, str],
        mode: str = "",
        local_ip: str = "",
        discovery: bool = False,
    ) -> None:
        cfg = self.cfg
        t0 = time.monotonic()
        venv = host_ops.venv()
        state = LabState(
            name=cfg.name,
            subnet=cfg.subnet,
            keep=tuple(host_ops.keep_paths([host_ops.checkout(), venv, host_ops.interpreter()])),
            venv=str(venv or ""),
            hosts=tuple(
                host_ops.new_record(cfg, i, meta.get(cfg.host_name(i), ""))
                for i in range(1, n_hosts + 1)
            ),
            members=tuple(
                etcd.with_local_url(etcd.record(cfg, i, bool(mode)), local_ip)
                for i in range(1, n_members + 1)
            ),
            fleet_env=dict(env),
            secure=mode,
            local_ip=local_ip,
        )
        save(cfg, state)
        network.create_bridge(cfg)
        log.info("bridge %s at %s/%d", cfg.bridge, cfg.gateway, cfg.network.prefixlen)
        if state.keep:
            log.info("hosts will see %s at the same path", ", ".join(state.keep))
        fleet = host_ops.fleetd_unit()
        if fleet is None:
            log.info("fleetd not installed in hosts (no deploy/fleet.service or fleetd yet)")
        else:
            log.info("hosts run fleet.service with %s", fleet[1])
        if mode:
            lab_secure.prepare(cfg)
        group = cgroups.create(f"{cfg.cgroup}/etcd")
        extra = lab_secure.etcd_args(cfg, mode) if mode else []
        if discovery:
            state = lab_discovery.start_cluster(cfg, state, group, extra, lambda s: save(cfg, s))
            members = list(state.members)
        else:
            members = etcd.start_cluster(cfg, state.members, group, extra)
        state = replace(state, members=tuple(members))
        save(cfg, state)
        for m in members:
            log.info("etcd member %s started: %s", m.name, etcd.client_listen_urls(m))
        ctx, _ = lab_secure.etcd_access(cfg, mode)
        if mode:  # users and roles before any fleetd connects
            etcd.wait_healthy(cfg, members, ctx=ctx)
            lab_secure.enable_auth(cfg, mode, state.client_urls)
            log.info(
                "etcd: TLS (%s), auth on: role fleetpy on /fleetpy/ for users fleetd, "
                "fleetctl; files in %s",
                mode,
                lab_secure.pki_dir(cfg),
            )
        started = _parallel(lambda h: host_ops.start(cfg, state, h), state.hosts)
        state = replace(state, hosts=tuple(started))
        save(cfg, state)

        def healthy() -> None:
            etcd.wait_healthy(cfg, members, ctx=ctx)
            log.info("etcd cluster healthy after %.1fs", time.monotonic() - t0)

        def booted(h: HostRecord) -> None:
            result = host_ops.wait_booted(cfg, h)
            log.info(
                "host %s booted (%s) after %.1fs at %s, machine-id %s",
                h.name,
                result,
                time.monotonic() - t0,
                h.ip,
                h.machine_id,
            )

        # Hosts boot while etcd elects its leader; fleetd retries until etcd answers.
        with ThreadPoolExecutor(1) as pool:
            health = pool.submit(healthy)
            _parallel(booted, started)
            health.result()

    def down(self) -> None:
        require_root()
        with locked(self.cfg):
            alive = teardown.alive(self.cfg)
            leftovers = teardown.leftovers(self.cfg)
            if not alive and not leftovers:
                raise LabError(f"lab {self.cfg.name} is not up: nothing to stop")
            if not alive:
                log.info("lab was dead; clearing its leftovers: %s", ", ".join(leftovers))
            started = time.monotonic()
            teardown.teardown(self.cfg)
            log.info("lab %s down in %.1fs", self.cfg.name, time.monotonic() - started)

    # -- status ---------------------------------------------------------------------

    def status(self) -> tuple[list[HostStatus], list[MemberStatus]]:
        require_root()
        state = self._state()
        host_rows = _parallel(lambda h: status.host_status(self.cfg, h), state.hosts)
        ctx, access = lab_secure.etcd_access(self.cfg, state.secure)
        return host_rows, _parallel(lambda m: status.member_status(m, ctx, access), state.members)
