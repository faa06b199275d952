"""A machine taken out of placement: cordoned, or draining (pure: no I/O, no clock).

``Cordon`` is what ``fleetctl cordon`` / ``drain`` write to ``cordoned/<machine_id>``
(fleetpy.registry.codec): durable, on no lease, so it survives fleetd restarts
and the machine's lease. The engine (fleetpy.engine.plan) places no new unit on
such a machine; units already there stay, except those a drain asks to
``move`` (placed elsewhere when some machine can take them, kept otherwise,
with the reason) or to ``stop`` (taken off the machine whatever happens: they
wait, naming the drain). ``stop_global``: global units leave it too.

A drain's pace is in the record too, so that the engine (the leader fleetd,
fleetpy.engine.drainer) carries it on whoever leads and whether or not a
fleetctl waits: ``max_parallel`` MachineOf groups moving at a time, and
``deadline`` (Unix time, absolute; None: none) after which what is left is
stopped. Records written before these existed read as 1 and None.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MachineState(enum.StrEnum):
    """list-machines' STATE column."""

    READY = "ready"
    CORDONED = "cordoned"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class Cordon:
    machine_id: str
    state: MachineState = MachineState.CORDONED
    by: str = ""  # who: user@host
    at: str = ""  # when: ISO 8601 UTC, written by the client
    reason: str = ""  # why, as the user said it
    move: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    stop_global: bool = False
    max_parallel: int = 1
    deadline: float | None = None

    def why(self) -> str:
        """The sentence a unit kept away by this cordon waits with."""
        return f"machine {self.machine_id[:8]} is {self.state.value}"
