"""Units kept running although nothing schedules them here: after a lost lease.

When a machine's lease expires (etcd unreachable from it for agent_ttl, the
host paused, fleetd down that long), the engine unschedules its units: those
it can place elsewhere move, the rest wait (a unit pinned by MachineID, one
with no room elsewhere) and Global units lose this machine's entry. When the
machine comes back and registers again, the engine schedules the waiting and
Global ones here again within a pass. An agent that unloaded every unit "not
scheduled here" as soon as it saw the change would stop them and start them
again a moment later: a restart that nothing asked for.

So, for a unit that runs here and is not scheduled here:

- while this machine's lease is lost, the agent keeps it: the change may only
  say that the machine was gone (``KEEP_LEASE_LOST``);
- for a while after the machine registered again (``hold_window``), it keeps
  it when the engine has not placed it anywhere else: it waits for a machine
  (a ``waiting/`` reason) or it is Global;
- otherwise it is unloaded as before: destroyed, desired inactive, or placed on
  another machine (a stale copy, stopped at once so two copies overlap as
  briefly as possible).

Pure: the caller reads the records and waiting reasons and the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from fleetpy.model.types import TargetState
from fleetpy.model.xfleet import xfleet_of
from fleetpy.registry.base import UnitRecord

KEEP_LEASE_LOST = (
    "this machine's lease is lost: it may only be unscheduled because the machine was gone"
)
KEEP_CUT_OFF = (
    "this machine cannot renew its lease in time: it may only be unscheduled because "
    "the machine was gone"
)


def hold_window(agent_ttl: float) -> float:
    """Seconds after registering again during which waiting units are kept: long
    enough for a new engine leader to be elected (a lease of agent_ttl) and plan."""
    return float(agent_ttl) + 5.0


def _is_global(record: UnitRecord) -> bool:
    try:
        return xfleet_of(record.unit.name, record.unit.contents).is_global
    except ValueError:  # InvalidXFleet, InvalidUnitFile
        return False


def kept_after_return(
    names: Sequence[str],
    records: Mapping[str, UnitRecord | None],
    waiting: Mapping[str, str],
    scheduled_here: Set[str] = frozenset(),
) -> dict[str, str]:
    """Of ``names`` (running here, not scheduled here as far as the agent's watch
    has told it, just after this machine registered again), those to keep running
    for now, with why. ``records``, ``waiting`` and ``scheduled_here`` were read
    after the watch's view: the engine may already have placed a unit here again."""
    kept: dict[str, str] = {}
    for name in names:
        if name in scheduled_here:
            kept[name] = "scheduled here again (the schedule watch has not said so yet)"
            continue
        record = records.get(name)
        if record is None or record.desired == TargetState.INACTIVE:
            continue  # destroyed or unloaded: the user asked
        if _is_global(record):
            kept[name] = "Global unit: the engine places it here again now that the machine is back"
        elif name in waiting:
            kept[name] = (
                f"not placed on any machine since this machine was gone ({waiting[name]}); "
                "the engine may place it here again"
            )
    return kept
