"""`fleetlab hollow`: hollow machines beside a lab's real hosts (kubemark's idea).

``up`` starts P worker processes (``python -m fleetpy.hollow.worker``) that
run N hollow machines between them against the lab's etcd, in the lab's
cgroup subtree (``fleetlab-<lab>/hollow``) so that ``fleetlab down`` stops them
with everything else. They take the lab's fleetd settings (``--fleet-env``:
agent_ttl, etcd_request_timeout, etcd_key_prefix). Each worker answers on a
control socket in ``<state-dir>/hollow/``: ``status`` and ``kill``.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fleetpy.config import Config, ConfigError
from fleetpy.config import load as load_config
from fleetpy.hollow import CONTROL_LIMIT
from fleetpy.lab import cgroups, procs
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import HollowRecord, LabConfig, LabState, save

log = logging.getLogger("fleetpy.lab")

MAX_HOLLOW = 5000
CONTROL_TIMEOUT = 30.0


@dataclass(frozen=True)
class WorkerStatus:
    index: int
    pid: int | None
    machines: int
    alive: int
    registered: int
    units: int
    active: int


def hollow_dir(cfg: LabConfig) -> Path:
    return cfg.state_dir / "hollow"


def machines_dir(cfg: LabConfig) -> Path:
    """Each hollow machine's fleetd state dir lives here, on tmpfs like a real /run/fleet
    (its unit record is written with fsync on every change)."""
    return Path("/dev/shm") / f"fleetlab-{cfg.name}-hollow"


def fleet_config(state: LabState) -> Config:
    """The lab's fleetd settings (its --fleet-env), as the hollow machines take them."""
    try:
        return load_config(None, state.fleet_env, {})
    except ConfigError as exc:
        raise LabError(f"the lab's fleetd settings: {exc}") from None


def _split(machines: int, processes: int) -> list[tuple[int, int]]:
    """(first, count) per worker, as even as possible."""
    base, extra = divmod(machines, processes)
    out, first = [], 0
    for i in range(processes):
        count = base + (1 if i < extra else 0)
        out.append((first, count))
        first += count
    return out


def ask(control: str, request: dict[str, Any], timeout: float = CONTROL_TIMEOUT) -> Any:
    """One request to a worker's control socket; its JSON answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(control)
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n") and len(data) < CONTROL_LIMIT:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def _live(state: LabState) -> list[HollowRecord]:
    return [w for w in state.hollow if w.proc is not None and w.proc.alive()]


def up(cfg: LabConfig, state: LabState, machines: int, processes: int, start_delay: float,
       metadata: str, timeout: float | None = None) -> LabState:
    """Start the workers and wait until every hollow machine is registered."""
    if not 1 <= machines <= MAX_HOLLOW:
        raise LabError(f"--machines must be 1..{MAX_HOLLOW}, not {machines}")
    if not 1 <= processes <= machines:
        raise LabError(f"--processes must be 1..{machines}, not {processes}")
    if start_delay < 0:
        raise LabError(f"--start-delay must not be negative, not {start_delay:g}")
    if state.secure:
        raise LabError("hollow machines do not support a --secure lab yet")
    if _live(state):
        raise LabError(f"lab {cfg.name} already has hollow machines: "
                       "`fleetlab hollow down` first")
    config = fleet_config(state)
    directory = hollow_dir(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    group = cgroups.create(f"{cfg.cgroup}/hollow")
    started = time.monotonic()
    records: list[HollowRecord] = []
    for index, (first, count) in enumerate(_split(machines, processes)):
        control = str(directory / f"worker-{index}.sock")
        Path(control).unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "fleetpy.hollow.worker", "--lab", cfg.name,
            "--etcd", ",".join(state.client_urls), "--prefix", config.etcd_key_prefix,
            "--first", str(first), "--count", str(count), "--ttl", str(config.agent_ttl),
            "--request-timeout", str(config.etcd_request_timeout),
            "--start-delay", str(start_delay), "--metadata", metadata,
            "--state-dir", str(machines_dir(cfg)), "--control", control,
        ]
        proc = procs.spawn(argv, directory / f"worker-{index}.log", group)
        records.append(HollowRecord(index, first, count, control, proc))
        state = replace(state, hollow=tuple(records))
        save(cfg, state)
    _wait_registered(records, machines, timeout or 60.0 + machines * 0.05)
    log.info("%d hollow machines up in %d processes after %.1fs (agent_ttl %ds)", machines,
             processes, time.monotonic() - started, config.agent_ttl)
    return state


def _wait_registered(records: list[HollowRecord], machines: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    registered = 0
    while time.monotonic() < deadline:
        for w in records:
            if w.proc is not None and not w.proc.alive():
                raise LabError(f"hollow worker {w.index} exited; see "
                               f"{Path(w.control).with_suffix('.log')}")
        try:
            registered = sum(ask(w.control, {"op": "status"}, 5.0)["registered"]
                             for w in records)
        except (OSError, ValueError, KeyError):
            registered = 0  # a worker not listening yet
        if registered == machines:
            return
        time.sleep(0.2)
    raise LabError(f"only {registered} of {machines} hollow machines registered after "
                   f"{timeout:.0f}s; see {records[0].control.rsplit('/', 1)[0]}/*.log")


def status(state: LabState) -> list[WorkerStatus]:
    rows = []
    for w in state.hollow:
        alive = w.proc is not None and w.proc.alive()
        answer: dict[str, int] = {}
        if alive:
            try:
                answer = ask(w.control, {"op": "status"}, 10.0)
            except (OSError, ValueError):
                answer = {}
        rows.append(WorkerStatus(
            w.index, w.proc.pid if w.proc is not None and alive else None,
            w.count, answer.get("alive", 0), answer.get("registered", 0),
            answer.get("units", 0), answer.get("active", 0)))
    return rows


def kill(state: LabState, count: int) -> list[str]:
    """Crash ``count`` hollow machines at once (spread over the workers); their ids."""
    live = _live(state)
    alive = {w.index: ask(w.control, {"op": "status"})["alive"] for w in live}
    total = sum(alive.values())
    if count < 1 or count > total:
        raise LabError(f"cannot kill {count} hollow machines: {total} are alive")
    share: dict[int, int] = {}
    left = count
    for w in live:
        share[w.index] = min(alive[w.index], count * alive[w.index] // total)
        left -= share[w.index]
    for w in live:  # the remainder, where there are machines left
        extra = min(left, alive[w.index] - share[w.index])
        share[w.index] += extra
        left -= extra
    killed: list[str] = []
    for w in live:
        if share[w.index]:
            killed += ask(w.control, {"op": "kill", "count": share[w.index]})["killed"]
    return killed


def down(cfg: LabConfig, state: LabState) -> LabState:
    """Stop the workers: their machines leave the cluster at once (leases revoked)."""
    workers = [w.proc for w in state.hollow if w.proc is not None]
    if not state.hollow:
        raise LabError(f"lab {cfg.name} has no hollow machines")
    procs.stop(workers, signal.SIGTERM, timeout=20.0)
    state = replace(state, hollow=())
    save(cfg, state)
    cgroups.remove(f"{cfg.cgroup}/hollow")
    for path in hollow_dir(cfg).glob("worker-*.sock"):
        path.unlink(missing_ok=True)
    shutil.rmtree(machines_dir(cfg), ignore_errors=True)
    return state

