"""Core value types shared by every layer (pure: no I/O, no clock).

These are the nouns of fleetpy. Everything here is an immutable dataclass so
that snapshots of the cluster can be passed around and compared freely.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class TargetState(enum.StrEnum):
    """fleet's desired/current unit states ("DSTATE" / "STATE")."""

    INACTIVE = "inactive"
    LOADED = "loaded"
    LAUNCHED = "launched"


@dataclass(frozen=True, slots=True)
class UnitFile:
    """A submitted unit: its name, raw contents and content hash (sha1 hex)."""

    name: str
    contents: str
    hash: str


@dataclass(frozen=True, slots=True)
class Machine:
    """A registered machine (one live fleetd agent).

    ``dashboard``: the URL of the dashboard its fleetd serves (``""``: none), where
    other fleetd fetch the journal of a unit running there.
    """

    id: str
    public_ip: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    dashboard: str = ""


@dataclass(frozen=True, slots=True)
class UnitState:
    """What an agent reports for one unit on its machine.

    ``load_state``/``active_state``/``sub_state`` are systemd's. ``fleet`` is
    what fleet itself did to the unit there: ``loaded``, ``starting`` (fleet
    started it and the start has not settled yet), ``launched``, or "" from
    an agent that does not say. ``error``: the last operation of fleet's on
    the unit that failed, with systemd's message ("" if none).
    """

    name: str
    machine_id: str
    load_state: str
    active_state: str
    sub_state: str
    hash: str
    fleet: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class ScheduledUnit:
    """One unit assigned to one machine: what that machine's agent must do.

    The schedule entry carries everything the agent needs (contents and the
    target state) so that an agent only ever watches its own schedule.
    """

    name: str
    machine_id: str
    target: TargetState
    hash: str
    contents: str
