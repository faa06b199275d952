"""fleetlab: a lab cluster on one machine (etcd members and systemd hosts).

    fleetlab up [--hosts 3] [--etcd-members 3] [--metadata HOST=K=V,..] [--fleet-env FLEET_X=V]
                [--secure | --secure=password]
    fleetlab down | status | env | shell HOST | exec HOST -- CMD...
    fleetlab host-stop [--kill] HOST | host-start HOST | host-add [--metadata K=V,..]
    fleetlab etcd-add | etcd-remove NAME

Global options ``--name`` (FLEETLAB_NAME, default fleetlab), ``--state-dir``
(FLEETLAB_STATE_DIR, default /var/lib/fleetlab/NAME), ``--subnet``
(FLEETLAB_SUBNET, default 172.17.8.0/24). Tests use ``Lab`` directly, through
the ``lab`` fixture in tests/lab/conftest.py (lab "fltest", 172.17.9.0/24).

What a lab is made of:
- bridge ``flb-NAME`` at .1 of the subnet (fixed MAC); etcd members infra1..M
  listen there on ports 4000+i (client) and 7000+i (peer), data and logs in
  STATE/etcd/;
- hosts core-01..N at .101.., each a systemd as PID 1 in its own pid, mount,
  uts, net and cgroup namespaces (see hostinit.py for the isolation), with its
  own machine-id, hostname, /etc/environment (COREOS_PUBLIC_IPV4,
  COREOS_PRIVATE_IPV4, ETCDCTL_API=3, ETCDCTL_ENDPOINTS, and FLEETPY_BIN /
  FLEETPY_UNIT_FILES for unit-files/part3's fleetpy-confd: units read it with
  EnvironmentFile=/etc/environment) and journald. Once deploy/fleet.service and
  the venv's fleetd exist, each host runs fleet.service (drop-in
  fleet.service.d/10-lab.conf: ExecStart=VENV/bin/fleetd, FLEET_ETCD_SERVERS,
  FLEET_PUBLIC_IP, FLEET_API_TCP=IP:49153; FLEET_METADATA only when given, as the
  walkthrough's machines have none; any --fleet-env such as FLEET_AGENT_TTL=5),
  and a real sshd (ssh.service, see ssh.py): its own host key, a ``core``
  user (sudo, groups systemd-journal and fleet) that only hosts know, the
  lab's key (STATE/ssh/id_ed25519) authorized;
- cgroups ``fleetlab-NAME/HOST`` and ``fleetlab-NAME/etcd`` in every hierarchy;
- with --secure (secure.py): a CA and certificates in STATE/pki, etcd on https
  with client certificates (or --secure=password: user names and passwords)
  and a role limited to /fleetpy/, fleetd's API on https requiring client
  certificates; `fleetlab env` exports the matching FLEETCTL_*/ETCDCTL_* files.

``exec``/``shell`` run as root inside the host with a clean environment: PATH
starts with the venv's bin (fleetctl, fleetd, python of this checkout), then the
system dirs; FLEETCTL_ENDPOINT=unix:///var/run/fleet.sock, ETCDCTL_API=3 and
ETCDCTL_ENDPOINTS (every member) are set, and FLEETCTL_SSH_IDENTITY_FILE and
FLEETCTL_KNOWN_HOSTS_FILE (the lab's key and known_hosts; `fleetlab env` sets
them too). /root, /home and /var/log are private in hosts. A host's journal:
``fleetlab exec core-01 -- journalctl -u fleet.service`` (or ``lab.exec``).
"""

from fleetpy.lab.api import HostInfo, Lab
from fleetpy.lab.errors import LabError
from fleetpy.lab.status import HostStatus, MemberStatus

__all__ = ["HostInfo", "HostStatus", "Lab", "LabError", "MemberStatus"]
