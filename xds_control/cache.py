"""The snapshot cache: versioned resources plus what every stream has ACKed.

Split from the stream state machines the way go-control-plane splits ``cache`` from
``server``: the cache knows resources and versions, never sockets. It is generic over
type URL -> resource name -> protobuf message, so tests can feed it hand-made resources.

Versions are derived from content, not from a counter that bumps every push: a resource's
version is a hash of its deterministic serialization, and a type's version only moves when
one of its resources is added, changed or removed. Setting an identical snapshot is a no-op
and wakes nobody, which is what keeps a chatty fleet from flooding its Envoys.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from google.protobuf import any_pb2
from google.protobuf.message import Message

Resources = Mapping[str, Mapping[str, Message]]


def content_version(message: Message) -> str:
    """A short stable hash of a message: equal content, equal version."""
    digest = hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Resource:
    """One resource with its content version and its wire form, packed once."""

    name: str
    version: str
    message: Message
    packed: any_pb2.Any


@dataclass(frozen=True)
class TypeSnapshot:
    """Every resource of one type; ``version`` moves only when the set or a resource changes."""

    version: str
    resources: Mapping[str, Resource]


EMPTY_TYPE = TypeSnapshot(version="", resources={})


@dataclass(frozen=True)
class CacheSnapshot:
    """An immutable view of the cache; ``serial`` counts content changes."""

    serial: int
    types: Mapping[str, TypeSnapshot]

    def get(self, type_url: str) -> TypeSnapshot:
        return self.types.get(type_url, EMPTY_TYPE)


@dataclass
class StreamRecord:
    """What one Envoy stream is known to run: per type, the last ACKed and NACKed version."""

    stream_id: int
    api: str  # "sotw" or "delta"
    peer: str
    node_id: str = ""
    acked: dict[str, str] = field(default_factory=dict)
    nacked: dict[str, tuple[str, str]] = field(default_factory=dict)  # type -> (version, error)

    def as_dict(self) -> dict[str, object]:
        return {
            "stream_id": self.stream_id,
            "api": self.api,
            "peer": self.peer,
            "node_id": self.node_id,
            "acked": dict(self.acked),
            "nacked": {t: {"version": v, "error": e} for t, (v, e) in self.nacked.items()},
        }


class SnapshotCache:
    """Holds the current resources and the per-stream ACK ledger; wakes streams on change."""

    def __init__(self) -> None:
        self._snapshot = CacheSnapshot(serial=0, types={})
        self._type_serials: dict[str, int] = {}
        self._listeners: dict[int, Callable[[], None]] = {}
        self._listener_ids = itertools.count(1)
        self._streams: dict[int, StreamRecord] = {}
        self._stream_ids = itertools.count(1)

    # -- resources ---------------------------------------------------------------------

    @property
    def snapshot(self) -> CacheSnapshot:
        return self._snapshot

    def set_resources(self, resources: Resources) -> set[str]:
        """Replace every resource; returns the type URLs whose version moved (empty: no-op).

        Types absent from ``resources`` are left alone, so pass every type (possibly empty)
        to delete all of its resources.
        """
        old = self._snapshot
        types = dict(old.types)
        changed: set[str] = set()
        for type_url, named in resources.items():
            previous = old.get(type_url)
            fresh: dict[str, Resource] = {}
            for name, message in named.items():
                version = content_version(message)
                kept = previous.resources.get(name)
                if kept is not None and kept.version == version:
                    fresh[name] = kept
                else:
                    packed = any_pb2.Any()
                    packed.Pack(message)
                    fresh[name] = Resource(name, version, message, packed)
            same = fresh.keys() == previous.resources.keys() and all(
                fresh[n] is previous.resources[n] for n in fresh
            )
            if same and type_url in old.types:
                continue
            serial = self._type_serials.get(type_url, 0) + 1
            self._type_serials[type_url] = serial
            types[type_url] = TypeSnapshot(version=str(serial), resources=fresh)
            changed.add(type_url)
        if changed:
            self._snapshot = CacheSnapshot(serial=old.serial + 1, types=types)
            for listener in list(self._listeners.values()):
                listener()
        return changed

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after every content change; returns the unsubscribe function."""
        key = next(self._listener_ids)
        self._listeners[key] = listener
        return lambda: self._listeners.pop(key, None) and None

    # -- stream ledger -----------------------------------------------------------------

    def open_stream(self, api: str, peer: str) -> StreamRecord:
        record = StreamRecord(stream_id=next(self._stream_ids), api=api, peer=peer)
        self._streams[record.stream_id] = record
        return record

    def close_stream(self, stream_id: int) -> None:
        """Forget a closed stream entirely, so reconnects do not grow the ledger."""
        self._streams.pop(stream_id, None)

    def record_ack(self, stream_id: int, type_url: str, version: str) -> None:
        record = self._streams.get(stream_id)
        if record is not None:
            record.acked[type_url] = version
            record.nacked.pop(type_url, None)

    def record_nack(self, stream_id: int, type_url: str, version: str, error: str) -> None:
        record = self._streams.get(stream_id)
        if record is not None:
            record.nacked[type_url] = (version, error)

    def streams(self) -> list[StreamRecord]:
        return list(self._streams.values())
