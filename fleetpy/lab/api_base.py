"""The base of fleetpy.lab.api's Lab: its configuration, its state as loaded
(refusing a lab that is not up), and the root check of every command that
changes the lab. The rest of Lab is in api_hosts, api_etcd and api_faults.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from fleetpy.lab.errors import LabError
from fleetpy.lab.state import DEFAULT_NAME, DEFAULT_SUBNET, LabConfig, LabState, load


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("must run as root (it creates namespaces, a bridge and cgroups): use sudo")


class LabBase:
    """A lab's configuration (``cfg``) and its state (``_state``)."""

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
