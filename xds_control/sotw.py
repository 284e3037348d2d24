"""State-of-the-world ADS: one stream's state machine, pure (no gRPC, no clock).

Rules it enforces (see XDS-NOTES.md):

- one response per type in flight: the next goes out only after Envoy answered the last
  (ACK or NACK), which is SotW's own flow control;
- a request whose nonce is not the latest sent for its type is stale and ignored;
- an empty nonce is a (re)subscription, always answered, even after a reconnect;
- a NACK is recorded but never answered with the same version again: Envoy keeps its last
  ACKed version and the next push happens when the snapshot really changes;
- types go out in CDS -> EDS -> LDS -> RDS order, and a type waits while an earlier type
  has an un-ACKed response that changed its resource set (a new or removed cluster), so
  routes never point at a cluster Envoy has not seen. A Cluster's own endpoints never
  wait for it (they are what warms it), and weight-only EDS pushes never wait at all;
- whenever a Cluster goes out, its ClusterLoadAssignment goes out again too.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from xds_control.cache import CacheSnapshot
from xds_control.resource_types import COMPANIONS, NAMED_ONLY, ordered


@dataclass(frozen=True)
class Outcome:
    """What a request meant, for the I/O edge to log, count and record in the cache."""

    kind: str  # "subscribe" | "ack" | "nack" | "stale"
    type_url: str
    version: str = ""
    error: str = ""


@dataclass
class _TypeState:
    names: frozenset[str] | None = None  # None: wildcard (every resource of the type)
    nonce: str = ""
    sent_version: str | None = None
    sent_names: frozenset[str] | None = None
    awaiting: bool = False
    structural: bool = False  # the un-ACKed response changed the resource set
    force: bool = False


def _requested_names(type_url: str, names: list[str]) -> frozenset[str] | None:
    if "*" in names or (not names and type_url not in NAMED_ONLY):
        return None
    return frozenset(names)


@dataclass
class SotwStream:
    """One ``StreamAggregatedResources`` stream's protocol state."""

    companions: dict[str, str] = field(default_factory=lambda: dict(COMPANIONS))
    node_id: str = ""
    _types: dict[str, _TypeState] = field(default_factory=dict)
    _nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def on_request(self, req: discovery_pb2.DiscoveryRequest) -> Outcome:
        if req.node.id:
            self.node_id = req.node.id
        st = self._types.setdefault(req.type_url, _TypeState())
        nonce = req.response_nonce
        if nonce and nonce != st.nonce:
            return Outcome("stale", req.type_url, req.version_info)
        names = _requested_names(req.type_url, list(req.resource_names))
        if names != st.names:
            st.names = names
            st.force = True
        if not nonce:
            # A fresh subscription (new stream, or Envoy re-subscribing): always answer.
            st.awaiting = False
            st.structural = False
            st.force = True
            return Outcome("subscribe", req.type_url, req.version_info)
        st.awaiting = False
        st.structural = False
        if req.HasField("error_detail"):
            return Outcome(
                "nack", req.type_url, st.sent_version or "", req.error_detail.message or "?"
            )
        return Outcome("ack", req.type_url, req.version_info)

    def responses(self, snap: CacheSnapshot) -> list[discovery_pb2.DiscoveryResponse]:
        """Every response due now, in ADS order (possibly none)."""
        out: list[discovery_pb2.DiscoveryResponse] = []
        blockers: list[str] = []  # earlier types with an un-ACKed structural change
        for type_url in ordered(list(self._types)):
            st = self._types[type_url]
            if st.awaiting:
                if st.structural:
                    blockers.append(type_url)
                continue
            # A type waits for earlier structural changes, except a Cluster's own endpoints.
            blocked = any(self.companions.get(b) != type_url for b in blockers)
            if blocked:
                continue
            typed = snap.get(type_url)
            if not st.force and st.sent_version == typed.version:
                continue
            picked = [
                r for n, r in sorted(typed.resources.items()) if st.names is None or n in st.names
            ]
            resp = discovery_pb2.DiscoveryResponse(
                version_info=typed.version,
                type_url=type_url,
                nonce=str(next(self._nonces)),
                resources=[r.packed for r in picked],
            )
            sent_names = frozenset(r.name for r in picked)
            st.structural = st.sent_names is not None and sent_names != st.sent_names
            st.sent_names = sent_names
            st.sent_version = typed.version
            st.nonce = resp.nonce
            st.awaiting = True
            st.force = False
            if st.structural:
                blockers.append(type_url)
            companion = self.companions.get(type_url)
            if companion is not None and companion in self._types:
                self._types[companion].force = True
            out.append(resp)
        return out
