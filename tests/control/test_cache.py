"""The snapshot cache: content versions, per-type versions, wake-ups, the ACK ledger."""

from __future__ import annotations

from tests.control.xds_client import resources
from xds_control import resource_types as rt
from xds_control.cache import SnapshotCache


def test_versions_follow_content_not_pushes() -> None:
    cache = SnapshotCache()
    woken: list[int] = []
    cache.subscribe(lambda: woken.append(cache.snapshot.serial))
    assert cache.set_resources(resources({"a": {1: 1}, "b": {2: 2}})) == {
        rt.CLUSTER,
        rt.ENDPOINT,
        rt.LISTENER,
        rt.ROUTE,
    }
    first = cache.snapshot
    assert cache.set_resources(resources({"a": {1: 1}, "b": {2: 2}})) == set()
    assert cache.snapshot is first and woken == [1]
    cache.set_resources(resources({"a": {1: 1}, "b": {2: 5}}))
    second = cache.snapshot
    assert second.get(rt.CLUSTER).version == first.get(rt.CLUSTER).version
    assert second.get(rt.ENDPOINT).version != first.get(rt.ENDPOINT).version
    eds1, eds2 = first.get(rt.ENDPOINT).resources, second.get(rt.ENDPOINT).resources
    assert eds2["a"] is eds1["a"]  # unchanged resources keep their version and wire form
    assert eds2["b"].version != eds1["b"].version
    assert woken == [1, 2]


def test_removal_moves_the_type_version() -> None:
    cache = SnapshotCache()
    cache.set_resources(resources({"a": {1: 1}, "b": {2: 2}}))
    before = cache.snapshot.get(rt.CLUSTER).version
    assert rt.CLUSTER in cache.set_resources(resources({"a": {1: 1}}))
    assert cache.snapshot.get(rt.CLUSTER).version != before
    assert list(cache.snapshot.get(rt.CLUSTER).resources) == ["a"]


def test_unsubscribed_listener_is_not_called() -> None:
    cache = SnapshotCache()
    calls: list[None] = []
    stop = cache.subscribe(lambda: calls.append(None))
    stop()
    cache.set_resources(resources({"a": {1: 1}}))
    assert calls == []


def test_ledger_tracks_acks_nacks_and_forgets_closed_streams() -> None:
    cache = SnapshotCache()
    rec = cache.open_stream("sotw", "ipv4:127.0.0.1:1")
    cache.record_nack(rec.stream_id, rt.CLUSTER, "3", "bad cluster")
    assert cache.streams()[0].as_dict()["nacked"] == {
        rt.CLUSTER: {"version": "3", "error": "bad cluster"}
    }
    cache.record_ack(rec.stream_id, rt.CLUSTER, "4")
    assert cache.streams()[0].acked == {rt.CLUSTER: "4"} and cache.streams()[0].nacked == {}
    cache.close_stream(rec.stream_id)
    assert cache.streams() == []
