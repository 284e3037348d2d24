"""Turning a :class:`NodeState` into a LoadReport message (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from fleet.proto import load_pb2
from sidecar.node_state import ModelLoad, NodeState

_STATES = {
    "loading": load_pb2.MODEL_STATE_LOADING,
    "loaded": load_pb2.MODEL_STATE_LOADED,
    "failed": load_pb2.MODEL_STATE_FAILED,
}
_U32 = 2**32 - 1


@dataclass(frozen=True)
class Identity:
    """Who the node is and where Envoy should send its traffic."""

    name: str
    address: str
    port: int

    def to_proto(self) -> load_pb2.NodeIdentity:
        return load_pb2.NodeIdentity(name=self.name, address=self.address, port=self.port)


def model_to_proto(m: ModelLoad) -> load_pb2.ModelLoad:
    return load_pb2.ModelLoad(
        model=m.model,
        state=_STATES.get(m.state, load_pb2.MODEL_STATE_UNSPECIFIED),
        in_flight=min(m.in_flight, _U32),
        queue_depth=min(m.queue_depth, _U32),
        max_in_flight=min(m.max_in_flight, _U32),
        max_queue_depth=min(m.max_queue_depth, _U32),
        admitted_total=m.admitted_total,
        rejected_total=m.rejected_total,
        decode_tps=m.decode_tps or 0.0,  # 0 = unknown
    )


def build_report(
    state: NodeState,
    *,
    sequence: int,
    heartbeat: bool,
    identity: Identity | None = None,
) -> load_pb2.LoadReport:
    """The node's full state; ``identity`` goes on a stream's first message."""
    report = load_pb2.LoadReport(
        models=[model_to_proto(m) for m in state.models],
        node_up=state.up,
        sequence=sequence,
        observed_unix_nanos=state.observed_unix_nanos,
        heartbeat=heartbeat,
    )
    if identity is not None:
        report.node.CopyFrom(identity.to_proto())
    return report
