"""A running lab's etcd cluster, a part of fleetpy.lab.api's Lab: add and remove
members, and members that join through the lab's discovery URL.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence

from fleetpy.lab import cgroups, etcd
from fleetpy.lab import discovery as lab_discovery
from fleetpy.lab import secure as lab_secure
from fleetpy.lab.api_base import LabBase, require_root
from fleetpy.lab.errors import LabError
from fleetpy.lab.state import MAX_MEMBERS, MemberRecord, locked, save

log = logging.getLogger("fleetpy.lab")


class EtcdOps(LabBase):
    """etcd_add, etcd_remove, discovery_join, discovery_status."""

    # -- etcd ---------------------------------------------------------------------

    def etcd_add(self) -> str:
        require_root()
        with locked(self.cfg):
            state = self._state()
            used = {m.index for m in (*state.members, *lab_discovery.processes(state))}
            index = next(i for i in range(1, MAX_MEMBERS + 2) if i not in used)
            if index > MAX_MEMBERS:
                raise LabError(f"the lab already has {MAX_MEMBERS} etcd members")
            rec = etcd.with_local_url(
                etcd.record(self.cfg, index, bool(state.secure)), state.local_ip
            )
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
        require_root()
        with locked(self.cfg):
            state = self._state()
            rec = state.member(name)
            if len(state.members) == 1:
                raise LabError(f"{name} is the last etcd member: `fleetlab down` stops the lab")
            others = [m.client_url for m in state.members if m.name != name]
            self._drop_member(others, rec, lab_secure.etcd_access(self.cfg, state.secure)[1])
            save(self.cfg, state.without_member(name))

    def _drop_member(
        self,
        endpoints: Sequence[str],
        rec: MemberRecord,
        access: Mapping[str, str],
        wait: float = 10.0,
    ) -> None:
        etcd.remove_member(endpoints, rec, access, wait)
        shutil.rmtree(self.cfg.member_dir(rec.name), ignore_errors=True)
        etcd.log_path(self.cfg, rec.name).unlink(missing_ok=True)

    def discovery_join(self, fallback: str = "proxy") -> str:
        """Start one more etcd with the lab's discovery URL (discovery.py); what it became."""
        require_root()
        with locked(self.cfg):
            return lab_discovery.join(
                self.cfg, self._state(), fallback, lambda s: save(self.cfg, s)
            )[0]

    def discovery_status(self) -> list[str]:
        return lab_discovery.describe(self._state())
