"""Model <-> protobuf conversions (only the API adapter touches generated code)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleetpy.api.gen import fleet_pb2 as pb
from fleetpy.model.types import Machine, ScheduledUnit, TargetState, UnitFile, UnitState

if TYPE_CHECKING:  # imported where used: fleetctl's list commands start without them
    from fleetpy.api.snapshot import Snapshot
    from fleetpy.model.cordon import Cordon
    from fleetpy.registry.base import UnitRecord

_STATE_TO_PB = {
    TargetState.INACTIVE: pb.TARGET_STATE_INACTIVE,
    TargetState.LOADED: pb.TARGET_STATE_LOADED,
    TargetState.LAUNCHED: pb.TARGET_STATE_LAUNCHED,
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}


class ConversionError(ValueError):
    """A message lacks a field it must have (INVALID_ARGUMENT)."""


def state_to_pb(state: TargetState) -> Any:
    return _STATE_TO_PB[state]


def state_from_pb(value: int) -> TargetState:
    try:
        return _STATE_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise ConversionError(f"invalid target state {value}") from None


def unit_file_to_pb(unit: UnitFile) -> pb.UnitFile:
    return pb.UnitFile(name=unit.name, contents=unit.contents, hash=unit.hash)


def unit_file_from_pb(msg: pb.UnitFile) -> UnitFile:
    return UnitFile(name=msg.name, contents=msg.contents, hash=msg.hash)


def record_to_pb(record: UnitRecord) -> pb.Unit:
    return pb.Unit(
        file=unit_file_to_pb(record.unit),
        desired=state_to_pb(record.desired),
        revision=record.revision,
    )


def record_from_pb(msg: pb.Unit) -> UnitRecord:
    from fleetpy.registry.base import UnitRecord

    return UnitRecord(
        unit=unit_file_from_pb(msg.file),
        desired=state_from_pb(msg.desired),
        revision=msg.revision,
    )


def machine_to_pb(machine: Machine) -> pb.Machine:
    return pb.Machine(id=machine.id, public_ip=machine.public_ip, metadata=dict(machine.metadata))


def machine_from_pb(msg: pb.Machine) -> Machine:
    return Machine(id=msg.id, public_ip=msg.public_ip, metadata=dict(msg.metadata))


def cordon_to_pb(cordon: Cordon) -> pb.Cordon:
    return pb.Cordon(
        machine_id=cordon.machine_id, state=cordon.state.value, by=cordon.by, at=cordon.at,
        reason=cordon.reason, move=list(cordon.move), stop=list(cordon.stop),
        stop_global=cordon.stop_global, max_parallel=cordon.max_parallel,
        deadline=cordon.deadline or 0.0)


def cordon_from_pb(msg: pb.Cordon) -> Cordon:
    """The Cordon of a message; ConversionError for a state other than cordoned/draining
    or a unit name that is not valid."""
    from fleetpy.model.cordon import Cordon, MachineState

    try:
        state = MachineState(msg.state)
    except ValueError:
        state = MachineState.READY
    if state == MachineState.READY:
        raise ConversionError(f"invalid cordon state {msg.state!r}: cordoned or draining")
    from fleetpy.model.names import validate_unit_name  # the server's side only: not on
    # fleetctl's list path (tests/unit/test_ctl_imports.py)

    for name in (*msg.move, *msg.stop):
        validate_unit_name(name)
    if msg.max_parallel < 0:
        raise ConversionError(f"invalid max_parallel {msg.max_parallel}: 1 or more")
    if not 0 <= msg.deadline < float("inf"):
        raise ConversionError(f"invalid deadline {msg.deadline}: a Unix time, 0 for none")
    return Cordon(
        machine_id=msg.machine_id, state=state, by=msg.by, at=msg.at, reason=msg.reason,
        move=tuple(msg.move), stop=tuple(msg.stop), stop_global=msg.stop_global,
        max_parallel=msg.max_parallel or 1, deadline=msg.deadline or None)


def state_msg_to_pb(state: UnitState) -> pb.UnitState:
    return pb.UnitState(
        name=state.name,
        machine_id=state.machine_id,
        load_state=state.load_state,
        active_state=state.active_state,
        sub_state=state.sub_state,
        hash=state.hash,
        fleet=state.fleet,
        error=state.error,
    )


def state_msg_from_pb(msg: pb.UnitState) -> UnitState:
    return UnitState(
        name=msg.name,
        machine_id=msg.machine_id,
        load_state=msg.load_state,
        active_state=msg.active_state,
        sub_state=msg.sub_state,
        hash=msg.hash,
        fleet=msg.fleet,
        error=msg.error,
    )


def scheduled_to_pb(unit: ScheduledUnit) -> pb.ScheduledUnit:
    return pb.ScheduledUnit(
        name=unit.name,
        machine_id=unit.machine_id,
        target=state_to_pb(unit.target),
        hash=unit.hash,
        contents=unit.contents,
    )


def scheduled_from_pb(msg: pb.ScheduledUnit) -> ScheduledUnit:
    return ScheduledUnit(
        name=msg.name,
        machine_id=msg.machine_id,
        target=state_from_pb(msg.target),
        hash=msg.hash,
        contents=msg.contents,
    )


def snapshot_to_pb(snap: Snapshot) -> pb.ClusterSnapshot:
    return pb.ClusterSnapshot(
        units=[record_to_pb(r) for r in snap.units.values()],
        schedule=[scheduled_to_pb(s) for s in snap.schedule],
        states=[state_msg_to_pb(s) for s in snap.states],
        waiting=dict(snap.waiting),
        machines=[machine_to_pb(m) for m in snap.machines.values()],
    )


def snapshot_from_pb(msg: pb.ClusterSnapshot) -> Snapshot:
    from fleetpy.api.snapshot import Snapshot

    return Snapshot(
        units={u.file.name: record_from_pb(u) for u in msg.units},
        schedule=tuple(scheduled_from_pb(s) for s in msg.schedule),
        states=tuple(state_msg_from_pb(s) for s in msg.states),
        waiting=dict(msg.waiting),
        machines={m.id: machine_from_pb(m) for m in msg.machines},
    )
