"""How users and tools reach a lab: `fleetlab env` and the environment of `fleetlab exec`.

fleetctl on this machine talks to the hosts' TCP APIs (every host's, in a
list it fails over along; plain, on the lab's own bridge, said nothing about;
https with the lab's client certificate in a --secure lab), to etcd for
--driver etcd, and ssh's into hosts with the lab's key and known_hosts
(ssh.py). etcdctl gets the lab's
endpoints (and root's TLS files or password in a --secure lab).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fleetpy.lab import hosts as host_ops
from fleetpy.lab import secure, ssh
from fleetpy.lab.state import FLEET_API_PORT, LabConfig, LabState


def api_endpoints(hosts: Sequence[tuple[str, bool]], scheme: str) -> str:
    """FLEETCTL_ENDPOINT: every host's API, the running hosts first, each group in
    host order (fleetctl fails over along the list; a stopped host first in it
    would cost each command its connect deadline). ``hosts``: (ip, running)."""
    ordered = [ip for ip, up in hosts if up] + [ip for ip, up in hosts if not up]
    return ",".join(f"{scheme}://{ip}:{FLEET_API_PORT}" for ip in ordered)


def client_env(cfg: LabConfig, state: LabState) -> dict[str, str]:
    """The variables `fleetlab env` exports."""
    hosts = [(h.ip, host_ops.running_pid(h) is not None) for h in state.hosts]
    out = {}
    if hosts:
        out["FLEETCTL_ENDPOINT"] = api_endpoints(hosts, "https" if state.secure else "http")
        if not state.secure:
            out["FLEETCTL_PLAIN_HTTP_OK"] = "1"  # a lab's bridge: plain is fine, say nothing
    urls = ",".join(state.client_urls)
    out |= {"FLEETCTL_ETCD_ENDPOINTS": urls, "ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": urls}
    out |= ssh.client_env(cfg)
    if state.secure:
        out |= secure.client_env(cfg, state.secure)
    out["FLEETLAB_NAME"] = cfg.name
    if state.venv:
        out["PATH"] = f"{state.venv}/bin:{os.environ.get('PATH', host_ops.BASE_PATH)}"
    return out


def exec_extra(cfg: LabConfig, state: LabState) -> dict[str, str]:
    """Variables for commands run inside hosts, on top of hosts.exec_env's."""
    return {**ssh.client_env(cfg), **secure.etcd_access(cfg, state.secure)[1]}
