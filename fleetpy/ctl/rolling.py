"""Rolling updates: the decisions, given what was observed and when.

``fleetctl rolling-update TEMPLATE_FILE`` replaces a template in the registry,
then each of its instances, ``max_parallel`` at a time (fleetpy.ctl.rollrun
drives it). The decisions are here, pure (no I/O, no clock, no logging; the
caller passes ``now``):

- ``plan_rollout``: which instances to update and in which order (launched
  instances by name; instances already on the new hash are left alone;
  instances not desired launched get the new contents at the end, with no
  health gate: nothing runs to check);
- ``next_batch``: the instances to start updating now;
- ``observe`` / ``health``: an instance is healthy once its machine reports it
  ``active`` with the new hash (after ExecStartPost: systemd says
  ``activating`` until it finished) for ``min_healthy`` without a break; it
  failed when that is not the case ``deadline`` after its update;
- ``revert_order``: after a failure with --auto-revert, the instances that got
  the new contents go back (the failing ones first: they are down anyway).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetpy.model.names import template_of
from fleetpy.model.types import TargetState, UnitFile, UnitState
from fleetpy.model.unitfile import short_hash
from fleetpy.registry.base import UnitRecord


@dataclass(frozen=True, slots=True)
class Rollout:
    """What a rolling update does: instances to gate on health, then the rest."""

    template: str
    new: UnitFile  # the new template
    launched: tuple[str, ...]  # updated in this order, each health-gated
    others: tuple[str, ...]  # not desired launched: new contents, no health gate
    current: tuple[str, ...]  # already on the new hash: left alone


def plan_rollout(new: UnitFile, records: Mapping[str, UnitRecord]) -> Rollout:
    """The instances of ``new`` (a template) among ``records`` and what to do with each."""
    launched: list[str] = []
    others: list[str] = []
    current: list[str] = []
    for name in sorted(records, key=_instance_key):
        if template_of(name) != new.name:
            continue
        rec = records[name]
        if rec.unit.hash == new.hash:
            current.append(name)
        elif rec.desired == TargetState.LAUNCHED:
            launched.append(name)
        else:
            others.append(name)
    return Rollout(new.name, new, tuple(launched), tuple(others), tuple(current))


def _instance_key(name: str) -> tuple[str, int, str]:
    """web@2 before web@10: numeric instances in numeric order."""
    prefix, _, rest = name.partition("@")
    instance = rest.rsplit(".", 1)[0]
    return (prefix, int(instance), "") if instance.isdigit() else (prefix, -1, instance)


def next_batch(pending: Sequence[str], in_flight: int, max_parallel: int) -> list[str]:
    """The instances to update now: as many as keep ``in_flight`` at ``max_parallel``."""
    room = max(0, max_parallel - in_flight)
    return list(pending[:room])


class Health(enum.StrEnum):
    WAITING = "waiting"
    HEALTHY = "healthy"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Watch:
    """One instance being updated: when, to which hash, and since when it is up."""

    name: str
    hash: str
    started: float
    active_since: float | None = None
    machine: str = ""  # where it last reported the new hash


def is_up(state: UnitState | None, digest: str) -> bool:
    return state is not None and state.hash == digest and state.active_state == "active"


def observe(watch: Watch, state: UnitState | None, now: float) -> Watch:
    """``watch`` after seeing ``state`` (its machine's report, or None) at ``now``."""
    machine = state.machine_id if state is not None and state.hash == watch.hash else ""
    if not is_up(state, watch.hash):
        return dataclasses.replace(watch, active_since=None, machine=machine or watch.machine)
    since = watch.active_since if watch.active_since is not None else now
    return dataclasses.replace(watch, active_since=since, machine=machine)


def health(watch: Watch, now: float, min_healthy: float, deadline: float) -> Health:
    """Healthy once up for ``min_healthy``; failed if not healthy ``deadline`` after its start."""
    if watch.active_since is not None and now - watch.active_since >= min_healthy:
        return Health.HEALTHY
    if now - watch.started >= deadline:
        return Health.FAILED
    return Health.WAITING


def describe(digest: str, state: UnitState | None, waiting: str = "") -> str:
    """Why a unit is not healthy, in a sentence: its state, sub-state and last error."""
    if state is None:
        return f"waiting for a machine: {waiting}" if waiting else "no machine reports it"
    if state.hash != digest:
        text = (f"still reported with hash {short_hash(state.hash)}, "
                f"not {short_hash(digest)} ({state.active_state}/{state.sub_state})")
    else:
        text = (f"{state.active_state}/{state.sub_state} (load {state.load_state}) "
                f"on {state.machine_id[:8]}")
    if state.error:
        text += f"; last error: {state.error}"
    return text


def revert_order(updated: Sequence[str], failed: Sequence[str]) -> list[str]:
    """Instances to put back: the failing ones first, then the others, latest first."""
    bad = [n for n in updated if n in failed]
    good = [n for n in reversed(updated) if n not in failed]
    return bad + good


def pick_state(states: Sequence[UnitState], name: str, machine: str | None) -> UnitState | None:
    """The report of ``name``: from its scheduled machine when known, else any."""
    found = [s for s in states if s.name == name]
    if machine is not None:
        on = [s for s in found if s.machine_id == machine]
        if on:
            return on[0]
    return found[0] if found else None
