"""Removing a lab, live or dead: everything it made, found by its names."""

from __future__ import annotations

import logging
import shutil
import signal
import time

from fleetpy.lab import cgroups, discovery, etcd, hollow, hosts, network, procs
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import STATE_ROOT, LabConfig, load

log = logging.getLogger("fleetpy.lab")


def alive(cfg: LabConfig) -> bool:
    """Any process that the lab's state file names still runs.

    Without a live process there (a crash, kill -9, a lost state file) the lab
    is dead: whatever else is left of it is leftovers.
    """
    try:
        state = load(cfg)
    except LabError:
        return False
    return state is not None and any(p.alive() for p in state.processes())


def leftovers(cfg: LabConfig) -> list[str]:
    """What a lab left behind: processes, state files, links, cgroup directories."""
    found = []
    stray = procs.running(cgroups.pids(cfg.cgroup))
    if stray:
        found.append(f"{len(stray)} processes in its cgroups")
    if cfg.state_dir.exists():
        found.append(f"state dir {cfg.state_dir}")
    found += [f"link {name}" for name in network.lab_links(cfg)]
    if cgroups.exists(cfg.cgroup):
        found.append(f"cgroup {cfg.cgroup}")
    return found


def teardown(cfg: LabConfig) -> None:
    """Stop and remove everything of this lab, whatever state it is in."""
    try:
        state = load(cfg)
    except LabError:
        state = None
    cgroups.thaw_tree(cfg.cgroup)  # a paused host: frozen tasks ignore SIGKILL
    if state is not None:
        # Everything is thrown away: no need for graceful (slow) stops.
        procs.stop([w.proc for w in state.hollow if w.proc is not None], signal.SIGKILL, 2.0)
        hosts.stop(cfg, state.hosts, grace=0)
        etcd.stop(state.members, signal.SIGKILL)
        etcd.stop(discovery.processes(state), signal.SIGKILL)
    _kill_stray(cfg)
    for name in network.lab_links(cfg):
        network.delete_link(name)
    cgroups.remove(cfg.cgroup)
    shutil.rmtree(hollow.machines_dir(cfg), ignore_errors=True)
    _remove_state_dir(cfg)


def _kill_stray(cfg: LabConfig) -> None:
    """SIGKILL anything still in the lab's cgroups (a lab whose state was lost)."""
    deadline = time.monotonic() + 10.0
    while (pids := procs.running(cgroups.pids(cfg.cgroup))) and time.monotonic() < deadline:
        log.info("killing %d stray lab processes", len(pids))
        for pid in pids:
            procs.send(pid, signal.SIGKILL)
        time.sleep(0.1)


def _remove_state_dir(cfg: LabConfig) -> None:
    """Remove what the lab writes; never anything else a user put there."""
    d = cfg.state_dir
    for entry in ("hosts", "etcd", "ssh", "pki", "hollow"):
        shutil.rmtree(d / entry, ignore_errors=True)
    for entry in ("lab.json", "lab.tmp"):
        (d / entry).unlink(missing_ok=True)
    for path in (d, STATE_ROOT):
        try:
            path.rmdir()
        except OSError:
            break
