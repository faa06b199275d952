"""The agent's hands on systemd: unit files, D-Bus calls, state change signals.

``UnitManager`` (base) is the contract; ``DbusUnitManager`` the real one (pystemd
in a worker process); ``FakeUnitManager`` the in-memory one for tests.
"""

from fleetpy.systemd.base import ChangeStream, SystemdError, UnitManager, UnitStatus
from fleetpy.systemd.dbus_manager import DbusUnitManager
from fleetpy.systemd.fake import FakeUnitManager

__all__ = [
    "ChangeStream",
    "DbusUnitManager",
    "FakeUnitManager",
    "SystemdError",
    "UnitManager",
    "UnitStatus",
]
