"""Faults the lab injects: a host cut off, a host frozen, etcd members down.

- partition/heal: both ends of the host's veth drop every packet (network.cut):
  a cut cable, silent; the host's systemd and units run on, and `fleetlab
  exec` still works (it enters the host's namespaces, not its network).
- pause/resume: the host's cgroup subtree is frozen (cgroups.freeze), like a
  stalled VM; commands run with `fleetlab exec` are not frozen, but anything
  that asks the host's processes (systemctl) waits until resume.
- etcd stop/start: members stop (SIGTERM, then SIGKILL) and start again on
  their data dirs, rejoining the same cluster.

Each takes the lab's state (loaded under its lock) and returns the state to
save. Partitioned and paused are recorded on the host's record; host-stop,
host-start and down clear them (hosts.stop thaws before it kills).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from fleetpy.lab import cgroups, etcd, network
from fleetpy.lab import hosts as host_ops
from fleetpy.lab import secure as lab_secure
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import HostRecord, LabConfig, LabState, MemberRecord

log = logging.getLogger("fleetpy.lab")

ETCD_START_TIMEOUT = 30.0


def _running(rec: HostRecord, what: str) -> int:
    pid = host_ops.running_pid(rec)
    if pid is None:
        raise LabError(f"host {rec.name} is stopped: cannot {what} it "
                       f"(`fleetlab host-start {rec.name}`)")
    return pid


def host_group(cfg: LabConfig, rec: HostRecord) -> str:
    return f"{cfg.cgroup}/{rec.name}"


# -- network ------------------------------------------------------------------------


def partition(cfg: LabConfig, state: LabState, host: str) -> LabState:
    rec = state.host(host)
    pid = _running(rec, "partition")
    if network.isolated(cfg, rec.index) and rec.partitioned:
        log.info("host %s is already partitioned", host)
        return state
    network.cut(cfg, rec.index, pid)
    log.info("host %s partitioned: all its traffic is dropped, both directions", host)
    return state.with_host(replace(rec, partitioned=True))


def heal(cfg: LabConfig, state: LabState, host: str) -> LabState:
    rec = state.host(host)
    pid = host_ops.running_pid(rec)
    if not rec.partitioned and not network.isolated(cfg, rec.index):
        log.info("host %s is not partitioned: nothing to heal", host)
        return state
    network.mend(cfg, rec.index, pid)
    log.info("host %s healed: its network is back", host)
    return state.with_host(replace(rec, partitioned=False))


# -- freezer ------------------------------------------------------------------------


def pause(cfg: LabConfig, state: LabState, host: str) -> LabState:
    rec = state.host(host)
    _running(rec, "pause")
    if cgroups.frozen(host_group(cfg, rec)):
        log.info("host %s is already paused", host)
    else:
        started = time.monotonic()
        cgroups.freeze(host_group(cfg, rec))
        log.info("host %s paused: every process frozen in %.2fs", host,
                 time.monotonic() - started)
    return state.with_host(replace(rec, paused=True))


def resume(cfg: LabConfig, state: LabState, host: str) -> LabState:
    rec = state.host(host)
    if not rec.paused and not cgroups.frozen(host_group(cfg, rec)):
        log.info("host %s is not paused: nothing to resume", host)
        return state
    cgroups.thaw_tree(host_group(cfg, rec))
    log.info("host %s resumed", host)
    return state.with_host(replace(rec, paused=False))


# -- etcd members -------------------------------------------------------------------


def _members(state: LabState, member: str | None) -> list[MemberRecord]:
    return list(state.members) if member is None else [state.member(member)]


def _alive(rec: MemberRecord) -> bool:
    return rec.proc is not None and rec.proc.alive()


def etcd_stop(cfg: LabConfig, state: LabState, member: str | None) -> LabState:
    """Stop ``member`` (None: every member); its data dir stays."""
    recs = _members(state, member)
    running = [m for m in recs if _alive(m)]
    for m in recs:
        if not _alive(m):
            log.info("etcd member %s is already stopped", m.name)
    # One after the other: members told to stop together hand their leadership
    # to each other until SIGKILL ends it.
    for m in running:
        started = time.monotonic()
        etcd.stop([m])
        log.info("etcd member %s stopped in %.1fs (data kept in %s)", m.name,
                 time.monotonic() - started, cfg.member_dir(m.name))
    for m in recs:
        state = state.with_member(replace(m, proc=None))
    return state


def etcd_start(cfg: LabConfig, state: LabState, member: str | None,
               save: Callable[[LabState], None]) -> LabState:
    """Start ``member`` (None: every stopped member) on its data dir and wait: until
    it is healthy, or, when too few members run for a quorum, until it serves its peers."""
    recs = _members(state, member)
    stopped = [m for m in recs if not _alive(m)]
    for m in recs:
        if _alive(m):
            log.info("etcd member %s is already running", m.name)
    missing = [m.name for m in stopped if not (cfg.member_dir(m.name) / "member").is_dir()]
    if missing:
        raise LabError(f"etcd member {', '.join(missing)} has no data dir under "
                       f"{cfg.member_dir('')}: it cannot rejoin")
    group = cgroups.create(f"{cfg.cgroup}/etcd")
    extra = lab_secure.etcd_args(cfg, state.secure) if state.secure else []
    cluster = etcd.initial_cluster(state.members)
    started = []
    for m in stopped:
        rec = etcd.start(cfg, m, cluster, "existing", group, extra)
        state = state.with_member(rec)
        save(state)
        started.append(rec)
        log.info("etcd member %s started on its data: %s", rec.name, rec.client_url)
    _wait_started(cfg, state, started)
    return state


def _wait_started(cfg: LabConfig, state: LabState, started: Sequence[MemberRecord]) -> None:
    if not started:
        return
    running = sum(1 for m in state.members if _alive(m))
    quorum = len(state.members) // 2 + 1
    t0 = time.monotonic()
    if running >= quorum:
        ctx, _ = lab_secure.etcd_access(cfg, state.secure)
        etcd.wait_healthy(cfg, started, timeout=ETCD_START_TIMEOUT, ctx=ctx)
        log.info("etcd healthy %.1fs after the start", time.monotonic() - t0)
        return
    for rec in started:
        etcd.wait_serving_peers(cfg, rec, timeout=ETCD_START_TIMEOUT)
    log.info("etcd: %d of %d members run, no quorum (needs %d): started member(s) serve "
             "their peers but the cluster is not healthy", running, len(state.members), quorum)
