"""What a test does to a running lab, a part of fleetpy.lab.api's Lab: faults
(fleetpy.lab.faults: partitions, paused hosts, stopped etcd members) and hollow
machines (fleetpy.lab.hollow).
"""

from __future__ import annotations

from collections.abc import Callable

from fleetpy.lab import faults
from fleetpy.lab import hollow as lab_hollow
from fleetpy.lab.api_base import LabBase, require_root
from fleetpy.lab.state import LabState, locked, save


class FaultOps(LabBase):
    """partition, heal, pause, resume, etcd_stop, etcd_start, hollow_*."""

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
        self._fault(
            lambda st: faults.etcd_start(self.cfg, st, member, lambda new: save(self.cfg, new))
        )

    def _fault(self, change: Callable[[LabState], LabState]) -> None:
        require_root()
        with locked(self.cfg):
            save(self.cfg, change(self._state()))

    # -- hollow machines (fleetpy.lab.hollow) -------------------------------------------

    def hollow_up(
        self, machines: int, processes: int = 2, start_delay: float = 0.0, metadata: str = ""
    ) -> None:
        """Start ``machines`` hollow machines in ``processes`` worker processes."""
        require_root()
        with locked(self.cfg):
            lab_hollow.up(self.cfg, self._state(), machines, processes, start_delay, metadata)

    def hollow_status(self) -> list[lab_hollow.WorkerStatus]:
        return lab_hollow.status(self._state())

    def hollow_kill(self, count: int) -> list[str]:
        """Crash ``count`` hollow machines at once (no lease revoke); their machine ids."""
        return lab_hollow.kill(self._state(), count)

    def hollow_down(self) -> None:
        require_root()
        with locked(self.cfg):
            lab_hollow.down(self.cfg, self._state())
