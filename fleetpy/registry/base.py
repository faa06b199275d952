"""The registry contract: what fleetpy keeps in etcd, as an async interface.

Key schema (all keys under a configurable prefix, default ``/fleetpy/``):

==========================================  ====================================  ===============
key                                         value (JSON)                          written by
==========================================  ====================================  ===============
``units/<name>``                            {"hash","contents","desired"}         fleetctl / API
``schedule/<machine_id>/<name>``            {"hash","contents","target"}          engine (leader)
``machines/<machine_id>``                   {"id","public_ip","metadata"}         agent (lease)
``states/<machine_id>/<name>``              {"load","active","sub","hash"}        agent (lease)
``waiting/<name>``                          {"reason"}                            engine (leader)
``refused/<machine_id>/<name>``             {"reason"}                            agent (lease)
``engine/leader``                           {"machine_id"}                        engine (lease)
``cordoned/<machine_id>``                   {"state","by","at","reason","move",   fleetctl / API
                                            "stop","stop_global"}
==========================================  ====================================  ===============

- An agent only ever watches ``schedule/<its machine id>/``: the schedule entry
  carries the unit's contents and target state. Global units are scheduled as
  ordinary entries on every matching machine.
- A machine's presence and its reported states hang on one lease per agent:
  they vanish together when the agent dies, for the price of one keepalive.
- ``refused/``: a unit of that name exists on the machine outside fleet, so
  its agent will not load it there (fleetpy.agent.foreign); the engine places
  the unit elsewhere or gives the refusals as the reason it waits.
- Engine writes are transactions that compare the leader key (value and
  create revision): a deposed leader's writes fail instead of landing.
- An entry that does not decode (anyone can write anything under the prefix)
  is skipped by every list and watch, never fatal; ``list_unreadable`` says
  which and why (fleetpy.registry.unreadable).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from fleetpy.registry.errors import RegistryError as RegistryError  # (defined apart: light)

if TYPE_CHECKING:  # annotations only: fleetctl imports this module on every command
    from fleetpy.model.cordon import Cordon
    from fleetpy.model.metadata import MetadataChange
    from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState
    from fleetpy.registry.unreadable import Unreadable

DEFAULT_PREFIX = "/fleetpy/"


class NotLeaderError(RegistryError):
    """An engine write was rejected because this engine no longer holds the lead."""


class MachineBackError(RegistryError):
    """A schedule write that needed a machine to be gone was refused: it registered again."""


class LeaseLostError(RegistryError):
    """A write named a lease that etcd no longer knows (it expired or was revoked).

    The keys it would have created are not written; the holder of the lease is
    told through ``Lease.wait_lost`` as well.
    """


@dataclass(frozen=True, slots=True)
class UnitRecord:
    """A submitted unit with the user's desired state."""

    unit: UnitFile
    desired: TargetState
    revision: int = 0


@dataclass(frozen=True, slots=True)
class LeaderToken:
    """Proof of leadership: compared in every engine transaction."""

    machine_id: str
    create_revision: int
    lease_id: int


class EventKind(enum.StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    """One change under a watched prefix; ``key`` is relative to the registry prefix."""

    kind: EventKind
    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class WatchUpdate:
    """What a resumable watch yields.

    ``reset`` is True for the first update and whenever the watch had to re-list
    (after a compaction): ``items`` is then the whole current content of the
    prefix (relative key -> value) and the consumer replaces its view. Otherwise
    ``events`` holds the changes since the previous update, in revision order.
    ``revisions`` gives each item's mod revision (when the watch knows it).
    """

    revision: int
    reset: bool = False
    items: Mapping[str, bytes] = field(default_factory=dict)
    events: Sequence[Event] = ()
    revisions: Mapping[str, int] = field(default_factory=dict)


class Lease(Protocol):
    """A granted lease kept alive in the background until revoked or lost."""

    @property
    def id(self) -> int: ...

    @property
    def ttl(self) -> int: ...

    def is_alive(self) -> bool: ...

    @property
    def renewed_at(self) -> float:
        """Event-loop time the last successful refresh (or the grant) was sent:
        etcd keeps the lease at least ``ttl`` seconds from then."""

    @property
    def keepalive_failures(self) -> int:
        """Refreshes that failed so far (each retried until the lease is lost)."""

    async def wait_lost(self) -> None:
        """Return when the lease is known to be gone (expired or revoked)."""

    async def revoke(self) -> None: ...


class Registry(Protocol):
    """Everything fleetpy stores. Implemented by EtcdRegistry and MemoryRegistry."""

    prefix: str

    async def close(self) -> None: ...

    # units: the user's intent -------------------------------------------------
    async def create_unit(self, unit: UnitFile, desired: TargetState) -> bool:
        """Create the unit if no unit of that name exists; False if one does."""

    async def put_unit(self, unit: UnitFile, desired: TargetState) -> None:
        """Create or replace (fleetctl --replace)."""

    async def get_unit(self, name: str) -> UnitRecord | None: ...

    async def list_units(self) -> list[UnitRecord]: ...

    async def set_desired(self, name: str, desired: TargetState) -> bool:
        """Change the desired state; False if the unit does not exist."""

    async def destroy_unit(self, name: str) -> bool:
        """Remove the unit; False if it did not exist."""

    # the same for many units, in a few transactions (fleetpy.registry.bulk) ------
    async def get_units(self, names: Sequence[str]) -> dict[str, UnitRecord | None]:
        """Name -> record, None for a unit that does not exist."""

    async def create_units(
        self, units: Sequence[UnitFile], desired: TargetState
    ) -> dict[str, bool]:
        """Create each unit that does not exist yet; name -> created."""

    async def set_desired_many(
        self, names: Sequence[str], desired: TargetState
    ) -> dict[str, bool]:
        """Set each unit's desired state; name -> False when it does not exist."""

    async def destroy_units(self, names: Sequence[str]) -> dict[str, bool]:
        """Remove each unit; name -> False when it did not exist."""

    # machines and reported unit states (lease-bound) ---------------------------
    async def grant_lease(self, ttl: int) -> Lease:
        """Grant a lease and keep it alive (refresh every ttl/3) until revoked."""

    async def adopt_lease(self, lease_id: int, ttl: int) -> Lease | None:
        """Keep alive a lease granted earlier (by a previous fleetd on this machine).

        None when that lease no longer exists. This is how a restarted fleetd
        keeps its machine registered and its units' states without a gap.
        """

    async def register_machine(self, machine: Machine, lease: Lease) -> bool:
        """Create ``machines/<id>`` on the lease; False if that id is already live."""

    async def update_machine(self, machine: Machine, lease: Lease) -> None: ...

    async def list_machines(self) -> list[Machine]: ...

    async def set_machine_metadata(
        self, machine_id: str, change: MetadataChange
    ) -> Machine | None:
        """Change a live machine's metadata (its record stays on its agent's lease).

        Returns the machine as changed; None when no such machine is registered.
        The machine's fleetd notices and keeps the change (fleetpy.agent.presence).
        """

    async def put_unit_states(self, states: Sequence[UnitState], lease: Lease) -> None:
        """Write reported states (batched in one transaction where possible)."""

    async def delete_unit_states(self, machine_id: str, names: Sequence[str]) -> None: ...

    async def list_unit_states(self, machine_id: str | None = None) -> list[UnitState]: ...

    def unit_state_pages(
        self, machine_id: str | None = None, page_size: int = 1000
    ) -> AsyncGenerator[list[UnitState], None]:
        """``list_unit_states`` in pages of at most ``page_size`` (by machine, then name),
        all read at one revision (fleetpy.registry.pages)."""
        ...

    def machine_pages(self, page_size: int = 1000) -> AsyncGenerator[list[Machine], None]:
        """``list_machines`` in pages of at most ``page_size``, by ID, at one revision."""
        ...

    async def put_refusals(
        self, machine_id: str, changes: Mapping[str, str | None], lease: Lease
    ) -> None:
        """Publish (on the lease) or withdraw (None) this machine's refusals of units."""

    async def list_refusals(self, machine_id: str | None = None) -> dict[tuple[str, str], str]:
        """(machine id, unit name) -> the reason that machine refuses that unit."""

    # cordon and drain (fleetpy.registry.cordons; no lease: durable) ------------
    async def put_cordon(self, cordon: Cordon) -> None:
        """Create or replace ``cordoned/<machine_id>``."""

    async def delete_cordon(self, machine_id: str) -> bool:
        """Uncordon; False when the machine was not cordoned."""

    async def list_cordons(self) -> dict[str, Cordon]:
        """Machine id -> its cordon (machines that are not cordoned are absent)."""

    async def update_cordon(
        self, cordon: Cordon, expected: Cordon | None, token: LeaderToken | None = None
    ) -> bool:
        """Compare-and-swap: write ``cordon`` only if the stored one is ``expected`` (None:
        absent) and, with ``token``, only while it holds the lead; False otherwise."""

    async def get_unit_states(self, keys: Sequence[tuple[str, str]]) -> list[UnitState]:
        """The states reported for these (machine id, unit) pairs (absent: left out)."""

    # schedule (engine writes, agents read) -------------------------------------
    async def list_schedule(self, machine_id: str | None = None) -> list[ScheduledUnit]: ...

    async def apply_schedule(
        self,
        token: LeaderToken,
        put: Sequence[ScheduledUnit],
        delete: Sequence[tuple[str, str]],
        waiting: Mapping[str, str | None] | None = None,
        absent: Sequence[str] = (),
    ) -> None:
        """Write schedule changes atomically, only while ``token`` holds the lead.

        ``delete`` holds (machine_id, unit name) pairs. ``waiting`` maps a unit
        name to the reason it cannot be placed, or None to clear it. ``absent``:
        machines that must still be gone (no ``machines/<id>``) for the write to
        land. Raises NotLeaderError when the leader key no longer matches the
        token, MachineBackError when one of ``absent`` registered again.
        """

    async def list_waiting(self) -> dict[str, str]: ...

    async def get_waiting(self, names: Sequence[str]) -> dict[str, str]:
        """Waiting reasons of those of ``names`` that wait for a machine."""
        ...

    async def lease_alive(self, lease: Lease) -> bool:
        """Whether etcd still holds ``lease`` (asked now; refreshes it)."""
        ...

    async def list_unreadable(self) -> list[Unreadable]:
        """Entries under the registry's prefixes that do not decode (every reader skips
        them); sorted by key."""

    # leadership ---------------------------------------------------------------
    async def campaign(self, machine_id: str, lease: Lease) -> LeaderToken | None:
        """Take the lead if nobody holds it (create-if-absent); None otherwise."""

    async def get_leader(self) -> str | None: ...

    async def resign(self, token: LeaderToken) -> None: ...

    # watches -----------------------------------------------------------------
    def watch(self, prefix: str) -> AsyncGenerator[WatchUpdate, None]:
        """Resumable watch of ``prefix`` (relative to the registry prefix).

        Starts with a reset (a full listing), then yields changes. Survives etcd
        restarts and leader changes by resuming from the last seen revision + 1;
        re-lists (another reset) after a compaction. Never loses an event.
        Stop it with ``aclose()`` (e.g. ``async with contextlib.aclosing(...)``).
        """
