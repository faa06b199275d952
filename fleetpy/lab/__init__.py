"""fleetlab: a lab cluster on one machine (etcd members and systemd hosts)."""

from fleetpy.lab.api import HostInfo, HostStatus, Lab, MemberStatus
from fleetpy.lab.errors import LabError

__all__ = ["HostInfo", "HostStatus", "Lab", "LabError", "MemberStatus"]
