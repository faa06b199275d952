"""A running lab's hosts, a part of fleetpy.lab.api's Lab: power one off or crash
it, add one, start one again, and run commands inside one.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import replace

from fleetpy.lab import access, fleetopts
from fleetpy.lab import hosts as host_ops
from fleetpy.lab.api_base import LabBase, require_root
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import MAX_HOSTS, locked, save

log = logging.getLogger("fleetpy.lab")

# fleet.service may take its TimeoutStopSec (15 s) to stop; then a poweroff ends.
POWEROFF_GRACE = 20.0


class HostOps(LabBase):
    """host_stop, host_add, host_start, command, exec."""

    # -- hosts -------------------------------------------------------------------

    def host_stop(self, host: str, kill: bool = False) -> None:
        """Power ``host`` off, or with ``kill`` crash it (SIGKILL its PID 1: nothing shuts down)."""
        require_root()
        with locked(self.cfg):
            state = self._state()
            rec = state.host(host)
            if host_ops.running_pid(rec) is None:
                raise LabError(f"host {host} is already stopped: `fleetlab host-start {host}`")
            host_ops.stop(self.cfg, [rec], grace=0 if kill else POWEROFF_GRACE)
            save(
                self.cfg, state.with_host(replace(rec, proc=None, partitioned=False, paused=False))
            )
            log.info("host %s %s", host, "killed" if kill else "powered off")

    def host_add(self, metadata: str = "") -> str:
        """Boot one more host (the next core-NN, a new machine-id) in a running lab."""
        require_root()
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
            log.info(
                "host %s added (%s) at %s, machine-id %s", rec.name, result, rec.ip, rec.machine_id
            )
            return rec.name

    def host_start(self, host: str) -> None:
        require_root()
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
        require_root()
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
