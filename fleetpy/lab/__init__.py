"""fleetlab: a lab cluster on one machine (etcd members and systemd hosts)."""

from fleetpy.lab.api import HostInfo, Lab
from fleetpy.lab.errors import LabError
from fleetpy.lab.status import HostStatus, MemberStatus

__all__ = ["HostInfo", "HostStatus", "Lab", "LabError", "MemberStatus"]
