from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TargetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_STATE_UNSPECIFIED: _ClassVar[TargetState]
    TARGET_STATE_INACTIVE: _ClassVar[TargetState]
    TARGET_STATE_LOADED: _ClassVar[TargetState]
    TARGET_STATE_LAUNCHED: _ClassVar[TargetState]
TARGET_STATE_UNSPECIFIED: TargetState
TARGET_STATE_INACTIVE: TargetState
TARGET_STATE_LOADED: TargetState
TARGET_STATE_LAUNCHED: TargetState

class UnitFile(_message.Message):
    __slots__ = ("name", "contents", "hash")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    contents: str
    hash: str
    def __init__(self, name: _Optional[str] = ..., contents: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class Unit(_message.Message):
    __slots__ = ("file", "desired", "revision")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    file: UnitFile
    desired: TargetState
    revision: int
    def __init__(self, file: _Optional[_Union[UnitFile, _Mapping]] = ..., desired: _Optional[_Union[TargetState, str]] = ..., revision: _Optional[int] = ...) -> None: ...

class Machine(_message.Message):
    __slots__ = ("id", "public_ip", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_IP_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    public_ip: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., public_ip: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UnitState(_message.Message):
    __slots__ = ("name", "machine_id", "load_state", "active_state", "sub_state", "hash", "fleet", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    LOAD_STATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_STATE_FIELD_NUMBER: _ClassVar[int]
    SUB_STATE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    FLEET_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    machine_id: str
    load_state: str
    active_state: str
    sub_state: str
    hash: str
    fleet: str
    error: str
    def __init__(self, name: _Optional[str] = ..., machine_id: _Optional[str] = ..., load_state: _Optional[str] = ..., active_state: _Optional[str] = ..., sub_state: _Optional[str] = ..., hash: _Optional[str] = ..., fleet: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ScheduledUnit(_message.Message):
    __slots__ = ("name", "machine_id", "target", "hash", "contents")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    machine_id: str
    target: TargetState
    hash: str
    contents: str
    def __init__(self, name: _Optional[str] = ..., machine_id: _Optional[str] = ..., target: _Optional[_Union[TargetState, str]] = ..., hash: _Optional[str] = ..., contents: _Optional[str] = ...) -> None: ...

class CreateUnitRequest(_message.Message):
    __slots__ = ("file", "desired")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    file: UnitFile
    desired: TargetState
    def __init__(self, file: _Optional[_Union[UnitFile, _Mapping]] = ..., desired: _Optional[_Union[TargetState, str]] = ...) -> None: ...

class CreateUnitResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class PutUnitRequest(_message.Message):
    __slots__ = ("file", "desired")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    file: UnitFile
    desired: TargetState
    def __init__(self, file: _Optional[_Union[UnitFile, _Mapping]] = ..., desired: _Optional[_Union[TargetState, str]] = ...) -> None: ...

class PutUnitResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetUnitRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetUnitResponse(_message.Message):
    __slots__ = ("unit",)
    UNIT_FIELD_NUMBER: _ClassVar[int]
    unit: Unit
    def __init__(self, unit: _Optional[_Union[Unit, _Mapping]] = ...) -> None: ...

class ListUnitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUnitsResponse(_message.Message):
    __slots__ = ("units",)
    UNITS_FIELD_NUMBER: _ClassVar[int]
    units: _containers.RepeatedCompositeFieldContainer[Unit]
    def __init__(self, units: _Optional[_Iterable[_Union[Unit, _Mapping]]] = ...) -> None: ...

class SetDesiredRequest(_message.Message):
    __slots__ = ("name", "desired")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    name: str
    desired: TargetState
    def __init__(self, name: _Optional[str] = ..., desired: _Optional[_Union[TargetState, str]] = ...) -> None: ...

class SetDesiredResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DestroyUnitRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DestroyUnitResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetUnitsRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class GetUnitsResponse(_message.Message):
    __slots__ = ("units", "missing")
    UNITS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    units: _containers.RepeatedCompositeFieldContainer[Unit]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, units: _Optional[_Iterable[_Union[Unit, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateUnitsRequest(_message.Message):
    __slots__ = ("files", "desired")
    FILES_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[UnitFile]
    desired: TargetState
    def __init__(self, files: _Optional[_Iterable[_Union[UnitFile, _Mapping]]] = ..., desired: _Optional[_Union[TargetState, str]] = ...) -> None: ...

class CreateUnitsResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, created: _Optional[_Iterable[str]] = ...) -> None: ...

class SetDesiredManyRequest(_message.Message):
    __slots__ = ("names", "desired")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    desired: TargetState
    def __init__(self, names: _Optional[_Iterable[str]] = ..., desired: _Optional[_Union[TargetState, str]] = ...) -> None: ...

class SetDesiredManyResponse(_message.Message):
    __slots__ = ("missing",)
    MISSING_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, missing: _Optional[_Iterable[str]] = ...) -> None: ...

class DestroyUnitsRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class DestroyUnitsResponse(_message.Message):
    __slots__ = ("missing",)
    MISSING_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, missing: _Optional[_Iterable[str]] = ...) -> None: ...

class ListMachinesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMachinesResponse(_message.Message):
    __slots__ = ("machines",)
    MACHINES_FIELD_NUMBER: _ClassVar[int]
    machines: _containers.RepeatedCompositeFieldContainer[Machine]
    def __init__(self, machines: _Optional[_Iterable[_Union[Machine, _Mapping]]] = ...) -> None: ...

class SetMachineMetadataRequest(_message.Message):
    __slots__ = ("machine_id", "set", "remove")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    machine_id: str
    set: _containers.ScalarMap[str, str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, machine_id: _Optional[str] = ..., set: _Optional[_Mapping[str, str]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class SetMachineMetadataResponse(_message.Message):
    __slots__ = ("machine",)
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    machine: Machine
    def __init__(self, machine: _Optional[_Union[Machine, _Mapping]] = ...) -> None: ...

class Cordon(_message.Message):
    __slots__ = ("machine_id", "state", "by", "at", "reason", "move", "stop", "stop_global", "max_parallel", "deadline")
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    STOP_GLOBAL_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    machine_id: str
    state: str
    by: str
    at: str
    reason: str
    move: _containers.RepeatedScalarFieldContainer[str]
    stop: _containers.RepeatedScalarFieldContainer[str]
    stop_global: bool
    max_parallel: int
    deadline: float
    def __init__(self, machine_id: _Optional[str] = ..., state: _Optional[str] = ..., by: _Optional[str] = ..., at: _Optional[str] = ..., reason: _Optional[str] = ..., move: _Optional[_Iterable[str]] = ..., stop: _Optional[_Iterable[str]] = ..., stop_global: _Optional[bool] = ..., max_parallel: _Optional[int] = ..., deadline: _Optional[float] = ...) -> None: ...

class PutCordonRequest(_message.Message):
    __slots__ = ("cordon", "compare", "expected")
    CORDON_FIELD_NUMBER: _ClassVar[int]
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    cordon: Cordon
    compare: bool
    expected: Cordon
    def __init__(self, cordon: _Optional[_Union[Cordon, _Mapping]] = ..., compare: _Optional[bool] = ..., expected: _Optional[_Union[Cordon, _Mapping]] = ...) -> None: ...

class PutCordonResponse(_message.Message):
    __slots__ = ("written",)
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    written: bool
    def __init__(self, written: _Optional[bool] = ...) -> None: ...

class DeleteCordonRequest(_message.Message):
    __slots__ = ("machine_id",)
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    machine_id: str
    def __init__(self, machine_id: _Optional[str] = ...) -> None: ...

class DeleteCordonResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class ListCordonsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCordonsResponse(_message.Message):
    __slots__ = ("cordons",)
    CORDONS_FIELD_NUMBER: _ClassVar[int]
    cordons: _containers.RepeatedCompositeFieldContainer[Cordon]
    def __init__(self, cordons: _Optional[_Iterable[_Union[Cordon, _Mapping]]] = ...) -> None: ...

class ListUnitStatesRequest(_message.Message):
    __slots__ = ("machine_id",)
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    machine_id: str
    def __init__(self, machine_id: _Optional[str] = ...) -> None: ...

class ListUnitStatesResponse(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[UnitState]
    def __init__(self, states: _Optional[_Iterable[_Union[UnitState, _Mapping]]] = ...) -> None: ...

class StreamMachinesRequest(_message.Message):
    __slots__ = ("page_size",)
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    def __init__(self, page_size: _Optional[int] = ...) -> None: ...

class StreamUnitStatesRequest(_message.Message):
    __slots__ = ("machine_id", "page_size")
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    machine_id: str
    page_size: int
    def __init__(self, machine_id: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListScheduleRequest(_message.Message):
    __slots__ = ("machine_id",)
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    machine_id: str
    def __init__(self, machine_id: _Optional[str] = ...) -> None: ...

class ListScheduleResponse(_message.Message):
    __slots__ = ("units",)
    UNITS_FIELD_NUMBER: _ClassVar[int]
    units: _containers.RepeatedCompositeFieldContainer[ScheduledUnit]
    def __init__(self, units: _Optional[_Iterable[_Union[ScheduledUnit, _Mapping]]] = ...) -> None: ...

class ListWaitingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWaitingResponse(_message.Message):
    __slots__ = ("waiting",)
    class WaitingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WAITING_FIELD_NUMBER: _ClassVar[int]
    waiting: _containers.ScalarMap[str, str]
    def __init__(self, waiting: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListUnreadableRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnreadableEntry(_message.Message):
    __slots__ = ("key", "problem", "revision")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    key: str
    problem: str
    revision: int
    def __init__(self, key: _Optional[str] = ..., problem: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class ListUnreadableResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[UnreadableEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[UnreadableEntry, _Mapping]]] = ...) -> None: ...

class WatchUnitStatesRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class ClusterSnapshot(_message.Message):
    __slots__ = ("units", "schedule", "states", "waiting", "machines")
    class WaitingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UNITS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    MACHINES_FIELD_NUMBER: _ClassVar[int]
    units: _containers.RepeatedCompositeFieldContainer[Unit]
    schedule: _containers.RepeatedCompositeFieldContainer[ScheduledUnit]
    states: _containers.RepeatedCompositeFieldContainer[UnitState]
    waiting: _containers.ScalarMap[str, str]
    machines: _containers.RepeatedCompositeFieldContainer[Machine]
    def __init__(self, units: _Optional[_Iterable[_Union[Unit, _Mapping]]] = ..., schedule: _Optional[_Iterable[_Union[ScheduledUnit, _Mapping]]] = ..., states: _Optional[_Iterable[_Union[UnitState, _Mapping]]] = ..., waiting: _Optional[_Mapping[str, str]] = ..., machines: _Optional[_Iterable[_Union[Machine, _Mapping]]] = ...) -> None: ...
