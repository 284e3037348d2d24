from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_LOADED: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_LOADED: ModelState
MODEL_STATE_FAILED: ModelState

class NodeIdentity(_message.Message):
    __slots__ = ("name", "address", "port")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    port: int
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class ModelLoad(_message.Message):
    __slots__ = ("model", "state", "in_flight", "queue_depth", "max_in_flight", "max_queue_depth", "admitted_total", "rejected_total", "decode_tps")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DECODE_TPS_FIELD_NUMBER: _ClassVar[int]
    model: str
    state: ModelState
    in_flight: int
    queue_depth: int
    max_in_flight: int
    max_queue_depth: int
    admitted_total: int
    rejected_total: int
    decode_tps: float
    def __init__(self, model: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., in_flight: _Optional[int] = ..., queue_depth: _Optional[int] = ..., max_in_flight: _Optional[int] = ..., max_queue_depth: _Optional[int] = ..., admitted_total: _Optional[int] = ..., rejected_total: _Optional[int] = ..., decode_tps: _Optional[float] = ...) -> None: ...

class LoadReport(_message.Message):
    __slots__ = ("node", "models", "node_up", "sequence", "observed_unix_nanos", "heartbeat")
    NODE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NODE_UP_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    node: NodeIdentity
    models: _containers.RepeatedCompositeFieldContainer[ModelLoad]
    node_up: bool
    sequence: int
    observed_unix_nanos: int
    heartbeat: bool
    def __init__(self, node: _Optional[_Union[NodeIdentity, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelLoad, _Mapping]]] = ..., node_up: _Optional[bool] = ..., sequence: _Optional[int] = ..., observed_unix_nanos: _Optional[int] = ..., heartbeat: _Optional[bool] = ...) -> None: ...

class LoadReportResponse(_message.Message):
    __slots__ = ("heartbeat_interval_ms", "stale_after_ms")
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    STALE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    stale_after_ms: int
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ..., stale_after_ms: _Optional[int] = ...) -> None: ...
