"""The agent's hands on systemd: unit files, D-Bus calls, state change signals.

``UnitManager`` (base) is the contract; ``DbusUnitManager`` the real one (pystemd
in a worker process); ``FakeUnitManager`` the in-memory one for tests.

Names are imported lazily: the worker process (``python -m
fleetpy.systemd.worker``) must not pay for asyncio and the rest in memory.
"""

from __future__ import annotations

import importlib

MYPY = False  # no typing at run time: the worker process imports this package
if MYPY:
    from typing import Any

_EXPORTS = {
    "ChangeStream": "fleetpy.systemd.base",
    "SystemdError": "fleetpy.systemd.base",
    "UnitManager": "fleetpy.systemd.base",
    "UnitStatus": "fleetpy.systemd.base",
    "DbusUnitManager": "fleetpy.systemd.dbus_manager",
    "FakeUnitManager": "fleetpy.systemd.fake",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
