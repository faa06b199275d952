"""The lab as a Python object: what the CLI and the test suites drive."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from fleetpy.lab import access, cgroups, etcd, faults, fleetopts, network, status, teardown
from fleetpy.lab import discovery as lab_discovery
from fleetpy.lab import hollow as lab_hollow
from fleetpy.lab import hosts as host_ops
from fleetpy.lab import secure as lab_secure
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import (
    DEFAULT_NAME,
    DEFAULT_SUBNET,
    MAX_HOSTS,
    MAX_MEMBERS,
    HostRecord,
    LabConfig,
    LabState,
    MemberRecord,
    load,
    locked,
    save,
)
from fleetpy.lab.status import HostStatus, MemberStatus

log = logging.getLogger("fleetpy.lab")
T = TypeVar("T")
R = TypeVar("R")

# fleet.service may take its TimeoutStopSec (15 s) to stop; then a poweroff ends.
POWEROFF_GRACE = 20.0

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


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("must run as root (it creates namespaces, a bridge and cgroups): use sudo")


class Lab:
    """One lab: etcd members infra1..M and hosts core-01..N on bridge flb-<name>.

    Every method that changes the lab holds its lock; errors a user can fix are
    ``LabError`` with a one-line message. Progress is logged to "fleetpy.lab",
    one line per decision.
    """

    def __init__(
        self, name: str = DEFAULT_NAME, state_dir: Path | None = None, subnet: str = DEFAULT_SUBNET
    ) -> None:
        self.cfg = LabConfig.make(name, state_dir, subnet)

    # -- reading -----------------------------------------------------------------

    def _state(self) -> LabState:
        state = load(self.cfg)
        if state is None or not any(p.alive() for p in state.processes()):
            raise LabError(f"lab {self.cfg.name} is not up: start it with `fleetlab up`")
        if state.subnet != self.cfg.subnet:  # a command given only --name: the lab's own subnet
            self.cfg = replace(self.cfg, subnet=state.subnet)
        return state

    def is_up(self) -> bool:
        return teardown.alive(self.cfg)

    @property
    def hosts(self) -> list[HostInfo]:
        state = load(self.cfg)
        if state is None:
            return []
        return [HostInfo(h.name, h.machine_id, h.ip, host_ops.running_pid(h), h.partitioned,
                         h.paused) for h in state.hosts]

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
        _require_root()
        mode = lab_secure.check_mode(secure)
        local = etcd.check_local_ip(
            etcd.default_local_ip(self.cfg) if local_ip is None else local_ip)
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
            keep=tuple(
                host_ops.keep_paths([host_ops.checkout(), venv, host_ops.interpreter()])
            ),
            venv=str(venv or ""),
            hosts=tuple(
                host_ops.new_record(cfg, i, meta.get(cfg.host_name(i), ""))
                for i in range(1, n_hosts + 1)
            ),
            members=tuple(etcd.with_local_url(etcd.record(cfg, i, bool(mode)), local_ip)
                          for i in range(1, n_members + 1)),
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
            log.info("etcd: TLS (%s), auth on: role fleetpy on /fleetpy/ for users fleetd, "
                     "fleetctl; files in %s", mode, lab_secure.pki_dir(cfg))
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
        _require_root()
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

    # -- hosts -------------------------------------------------------------------

    def host_stop(self, host: str, kill: bool = False) -> None:
        """Power ``host`` off, or with ``kill`` crash it (SIGKILL its PID 1: nothing shuts down)."""
        _require_root()
        with locked(self.cfg):
            state = self._state()
            rec = state.host(host)
            if host_ops.running_pid(rec) is None:
                raise LabError(f"host {host} is already stopped: `fleetlab host-start {host}`")
            host_ops.stop(self.cfg, [rec], grace=0 if kill else POWEROFF_GRACE)
            save(self.cfg, state.with_host(replace(rec, proc=None, partitioned=False,
                                                   paused=False)))
            log.info("host %s %s", host, "killed" if kill else "powered off")

    def host_add(self, metadata: str = "") -> str:
        """Boot one more host (the next core-NN, a new machine-id) in a running lab."""
        _require_root()
        meta = fleetopts.canonical_metadata(metadata) if metadata else ""
        with locked(self.cfg):
            state = self._state()
            index = max((h.index for h in state.hosts), default=0) + 1
            if index > MAX_HOSTS:
                raise LabError(f"the lab already has {MAX_HOSTS} hosts")
            rec = host_ops.new_record(self.cfg, index, meta)
            state = state.with_host(rec)
            save(self.cfg, state)
            rec = host_ops.start(self.cfg, state, rec)
            save(self.cfg, state.with_host(rec))
            result = host_ops.wait_booted(self.cfg, rec)
            log.info("host %s added (%s) at %s, machine-id %s", rec.name, result, rec.ip,
                     rec.machine_id)
            return rec.name

    def host_start(self, host: str) -> None:
        _require_root()
        with locked(self.cfg):
            state = self._state()
            rec = state.host(host)
            if host_ops.running_pid(rec) is not None:
                raise LabError(f"host {host} is already running")
            rec = host_ops.start(self.cfg, state, rec)
            save(self.cfg, state.with_host(rec))
            result = host_ops.wait_booted(self.cfg, rec)
            log.info("host %s booted (%s), machine-id %s", host, result, rec.machine_id)

    def command(
        self, host: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that run ``argv`` inside ``host``."""
        _require_root()
        state = self._state()
        rec = state.host(host)
        pid = host_ops.running_pid(rec)
        if pid is None:
            raise LabError(f"host {host} is stopped: `fleetlab host-start {host}`")
        extra = {**access.exec_extra(self.cfg, state), **(env or {})}
        return host_ops.nsenter(pid, argv), host_ops.exec_env(state, rec, extra)

    def exec(
        self,
        host: str,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float | None = 60,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host``; output captured; a non-zero exit is not an error."""
        full, full_env = self.command(host, argv, env)
        done = subprocess.run(
            full,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )
        return subprocess.CompletedProcess(list(argv), done.returncode, done.stdout, done.stderr)

    # -- etcd ---------------------------------------------------------------------

    def etcd_add(self) -> str:
        _require_root()
        with locked(self.cfg):
            state = self._state()
            used = {m.index for m in (*state.members, *lab_discovery.processes(state))}
            index = next(i for i in range(1, MAX_MEMBERS + 2) if i not in used)
            if index > MAX_MEMBERS:
                raise LabError(f"the lab already has {MAX_MEMBERS} etcd members")
            rec = etcd.with_local_url(etcd.record(self.cfg, index, bool(state.secure)),
                                      state.local_ip)
            ctx, access = lab_secure.etcd_access(self.cfg, state.secure)
            cluster = etcd.member_add(state.client_urls, rec, access)
            log.info("etcd member %s added to the cluster: %s", rec.name, cluster)
            try:
                group = cgroups.create(f"{self.cfg.cgroup}/etcd")
                extra = lab_secure.etcd_args(self.cfg, state.secure) if state.secure else []
                rec = etcd.start(self.cfg, rec, cluster, "existing", group, extra)
                save(self.cfg, state.with_member(rec))
                etcd.wait_healthy(self.cfg, [rec], ctx=ctx)
            except BaseException:
                self._drop_member(state.client_urls, rec, access, wait=0.0)
                save(self.cfg, state)
                raise
            log.info("etcd member %s started: %s", rec.name, etcd.client_listen_urls(rec))
            return rec.name

    def etcd_remove(self, name: str) -> None:
        _require_root()
        with locked(self.cfg):
            state = self._state()
            rec = state.member(name)
            if len(state.members) == 1:
                raise LabError(f"{name} is the last etcd member: `fleetlab down` stops the lab")
            others = [m.client_url for m in state.members if m.name != name]
            self._drop_member(others, rec, lab_secure.etcd_access(self.cfg, state.secure)[1])
            save(self.cfg, state.without_member(name))

    def _drop_member(
        self, endpoints: Sequence[str], rec: MemberRecord, access: Mapping[str, str],
        wait: float = 10.0,
    ) -> None:
        etcd.remove_member(endpoints, rec, access, wait)
        shutil.rmtree(self.cfg.member_dir(rec.name), ignore_errors=True)
        etcd.log_path(self.cfg, rec.name).unlink(missing_ok=True)

    def discovery_join(self, fallback: str = "proxy") -> str:
        """Start one more etcd with the lab's discovery URL (discovery.py); what it became."""
        _require_root()
        with locked(self.cfg):
            return lab_discovery.join(self.cfg, self._state(), fallback,
                                      lambda s: save(self.cfg, s))[0]

    def discovery_status(self) -> list[str]:
        return lab_discovery.describe(self._state())

    # -- faults (fleetpy.lab.faults) ---------------------------------------------------

    def partition(self, host: str) -> None:
        """Cut ``host`` off: all its traffic dropped silently, both ways; it runs on."""
        self._fault(lambda st: faults.partition(self.cfg, st, host))

    def heal(self, host: str) -> None:
        """Give ``host`` its network back (a healthy host: nothing to do)."""
        self._fault(lambda st: faults.heal(self.cfg, st, host))

    def pause(self, host: str) -> None:
        """Freeze every process of ``host``, like a stalled VM."""
        self._fault(lambda st: faults.pause(self.cfg, st, host))

    def resume(self, host: str) -> None:
        self._fault(lambda st: faults.resume(self.cfg, st, host))

    def etcd_stop(self, member: str | None) -> None:
        """Stop etcd ``member`` (None: all) with SIGTERM, then SIGKILL; data kept."""
        self._fault(lambda st: faults.etcd_stop(self.cfg, st, member))

    def etcd_start(self, member: str | None) -> None:
        """Start ``member`` (None: all stopped) on its data; wait until healthy, or
        until it runs when too few members run for a quorum."""
        self._fault(lambda st: faults.etcd_start(
            self.cfg, st, member, lambda new: save(self.cfg, new)))

    def _fault(self, change: Callable[[LabState], LabState]) -> None:
        _require_root()
        with locked(self.cfg):
            save(self.cfg, change(self._state()))

    # -- hollow machines (fleetpy.lab.hollow) -------------------------------------------

    def hollow_up(self, machines: int, processes: int = 2, start_delay: float = 0.0,
                  metadata: str = "") -> None:
        """Start ``machines`` hollow machines in ``processes`` worker processes."""
        _require_root()
        with locked(self.cfg):
            lab_hollow.up(self.cfg, self._state(), machines, processes, start_delay, metadata)

    def hollow_status(self) -> list[lab_hollow.WorkerStatus]:
        return lab_hollow.status(self._state())

    def hollow_kill(self, count: int) -> list[str]:
        """Crash ``count`` hollow machines at once (no lease revoke); their machine ids."""
        return lab_hollow.kill(self._state(), count)

    def hollow_down(self) -> None:
        _require_root()
        with locked(self.cfg):
            lab_hollow.down(self.cfg, self._state())

    # -- status ---------------------------------------------------------------------

    def status(self) -> tuple[list[HostStatus], list[MemberStatus]]:
        _require_root()
        state = self._state()
        host_rows = _parallel(lambda h: status.host_status(self.cfg, h), state.hosts)
        ctx, access = lab_secure.etcd_access(self.cfg, state.secure)
        return host_rows, _parallel(lambda m: status.member_status(m, ctx, access), state.members)
