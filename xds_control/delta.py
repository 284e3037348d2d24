"""Incremental (Delta) ADS: one stream's state machine, pure (no gRPC, no clock).

Per type it tracks what Envoy subscribed to (explicit names and/or wildcard) and which
version of each resource Envoy has (``known``; ``""`` = Envoy was told it does not
exist). A response carries only resources whose version differs from ``known`` plus
``removed_resources`` for what disappeared, so a weight change to one model sends one
ClusterLoadAssignment. Subscription changes apply even on a stale nonce; a NACK is
recorded and the rejected versions are not re-sent until they change. The same
ordering and Cluster -> ClusterLoadAssignment companion rule as SotW apply.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from xds_control.cache import CacheSnapshot
from xds_control.resource_types import COMPANIONS, ordered
from xds_control.sotw import Outcome

_ABSENT = ""


@dataclass
class _TypeState:
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)
    force: set[str] = field(default_factory=set)
    nonce: str = ""
    sent_version: str = ""
    awaiting: bool = False
    structural: bool = False
    started: bool = False


@dataclass
class DeltaStream:
    """One ``DeltaAggregatedResources`` stream's protocol state."""

    companions: dict[str, str] = field(default_factory=lambda: dict(COMPANIONS))
    node_id: str = ""
    _types: dict[str, _TypeState] = field(default_factory=dict)
    _nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def on_request(self, req: discovery_pb2.DeltaDiscoveryRequest) -> Outcome:
        if req.node.id:
            self.node_id = req.node.id
        st = self._types.setdefault(req.type_url, _TypeState())
        subscribe = list(req.resource_names_subscribe)
        if not st.started:
            st.started = True
            # Legacy wildcard: a first request that names nothing subscribes to everything.
            st.wildcard = not subscribe
            st.known.update(req.initial_resource_versions)
        for name in subscribe:
            if name == "*":
                st.wildcard = True
            elif name not in st.names:
                st.names.add(name)
        for name in req.resource_names_unsubscribe:
            if name == "*":
                st.wildcard = False
            else:
                st.names.discard(name)
                st.known.pop(name, None)
                st.force.discard(name)
        if not st.wildcard:
            # Envoy forgets what it no longer subscribes to; so do we.
            for name in [n for n in st.known if n not in st.names]:
                del st.known[name]
        nonce = req.response_nonce
        if not nonce:
            return Outcome("subscribe", req.type_url)
        if nonce != st.nonce:
            return Outcome("stale", req.type_url)
        st.awaiting = False
        st.structural = False
        if req.HasField("error_detail"):
            return Outcome("nack", req.type_url, st.sent_version, req.error_detail.message or "?")
        return Outcome("ack", req.type_url, st.sent_version)

    def responses(self, snap: CacheSnapshot) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """Every response due now, in ADS order (possibly none)."""
        out: list[discovery_pb2.DeltaDiscoveryResponse] = []
        blockers: list[str] = []  # earlier types with an un-ACKed structural change
        for type_url in ordered(list(self._types)):
            st = self._types[type_url]
            if st.awaiting:
                if st.structural:
                    blockers.append(type_url)
                continue
            # A type waits for earlier structural changes, except a Cluster's own endpoints.
            blocked = any(self.companions.get(b) != type_url for b in blockers)
            if blocked or not st.started:
                continue
            typed = snap.get(type_url)
            if st.wildcard:
                interested = set(typed.resources) | {n for n, v in st.known.items() if v}
                interested |= st.names
            else:
                interested = set(st.names)
            send = []
            removed = []
            for name in sorted(interested):
                res = typed.resources.get(name)
                have = st.known.get(name)
                if res is not None:
                    if have != res.version or name in st.force:
                        send.append(res)
                elif have != _ABSENT:
                    removed.append(name)
            st.force.clear()
            if not send and not removed:
                continue
            resp = discovery_pb2.DeltaDiscoveryResponse(
                system_version_info=typed.version,
                type_url=type_url,
                nonce=f"{type_url.rsplit('.', 1)[-1]}-{next(self._nonces)}",
                resources=[
                    discovery_pb2.Resource(name=r.name, version=r.version, resource=r.packed)
                    for r in send
                ],
                removed_resources=removed,
            )
            st.structural = bool(removed) or any(st.known.get(r.name) is None for r in send)
            for r in send:
                st.known[r.name] = r.version
            for name in removed:
                st.known[name] = _ABSENT
            st.nonce = resp.nonce
            st.sent_version = typed.version
            st.awaiting = True
            if st.structural:
                blockers.append(type_url)
            companion = self.companions.get(type_url)
            if companion is not None and companion in self._types:
                self._types[companion].force.update(r.name for r in send)
            out.append(resp)
        return out
