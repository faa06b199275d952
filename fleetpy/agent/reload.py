"""When a pass that loads unit files can leave out its daemon-reload (I/O side).

A daemon-reload costs 50-150 ms on a lab host and is the largest part of the
agent's reaction to a new unit. systemd 252 loads a unit it has not found
before from disk the next time it is asked for it, without a reload (its
unit-path cache is out of date: manager_unit_cache_should_retry_load; checked
on a lab host by tests/lab/test_start_path.py). So when systemd had loaded none
of the units a pass writes (the pure rule: fleetpy.agent.plan.reload_avoidable),
the agent asks systemd for them after writing and reloads only if one is still
not found (systemd did not see the directory change, e.g. a coarse directory
timestamp). A changed or removed unit always gets the reload.
"""

from __future__ import annotations

from fleetpy.agent.machine_log import MachineLog
from fleetpy.agent.plan import reload_avoidable
from fleetpy.systemd.base import SystemdError, UnitManager, UnitStatus


async def new_to_systemd(manager: UnitManager, names: list[str]) -> bool:
    """Whether systemd has loaded none of NAMES (the units a pass loads, asked before
    their files are written): then the pass may do without a daemon-reload."""
    if not names:
        return False
    try:
        before = await manager.statuses(names)
    except SystemdError:
        return False  # the reload decides, as ever
    return reload_avoidable(names, {n: (s.load_state, s.active_state) for n, s in before.items()})


async def found_without_reload(
    manager: UnitManager, names: list[str], log: MachineLog
) -> dict[str, UnitStatus] | None:
    """Ask systemd for NAMES, new to it, without a daemon-reload: their statuses when
    it found every file, None when the reload is needed after all. Logs which."""
    try:
        statuses = await manager.statuses(names)
    except SystemdError:
        return None
    missing = [n for n in names if n not in statuses or statuses[n].load_state == "not-found"]
    if missing:
        log.info("daemon-reload after all: systemd does not find %s without one",
                 _some(missing))
        return None
    log.info("daemon-reload skipped: %s new to systemd, found without one", _some(names))
    return statuses


def _some(names: list[str], shown: int = 3) -> str:
    """``a, b, c and 7 more``: a log line stays short when a pass loads hundreds."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
