"""core/v1 Event detection: which Events are reported, and how repeats are coalesced."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from painchain_connector.detecting import common, detect, project
from painchain_connector.model import DetectContext

OBSERVED = datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC)
CTX = DetectContext(cluster="prod", observed_at=OBSERVED, event_repeat_window=300)
UID = "e0e0e0e0-1111-2222-3333-444455556666"


def event(*, reason="BackOff", type_="Warning", count=1, last="2024-05-02T11:00:00Z", rv="100",
          message="Back-off restarting failed container app in pod api-7d9f"):
    """A core/v1 Event as kubelet's legacy recorder writes it: eventTime null, no series."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "api-7d9f.17c9a1b2c3d4e5f6", "namespace": "shop", "uid": UID, "resourceVersion": rv,
                     "creationTimestamp": "2024-05-02T11:00:00Z"},
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "api-7d9f", "uid": "p0d", "apiVersion": "v1",
                           "fieldPath": "spec.containers{app}"},
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2024-05-02T11:00:00Z",
        "lastTimestamp": last,
        "count": count,
        "type": type_,
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1",
    }


def series_event(*, count=2, last="2024-05-02T11:00:00.250000Z"):
    """An Event written through events.k8s.io, read through core/v1: lastTimestamp null, eventTime set."""
    obj = event()
    obj.update({"firstTimestamp": None, "lastTimestamp": None, "count": None, "source": {},
                "eventTime": "2024-05-02T11:00:00.000000Z", "reportingComponent": "kubelet",
                "series": {"count": count, "lastObservedTime": last}})
    return obj


def feed(*objects, baseline=False):
    state = project("events", objects[0]) if baseline else None
    changes = []
    for obj in objects[1:] if baseline else objects:
        found, state = detect("events", state, project("events", obj), deleted=False, ctx=CTX)
        changes += found
    return changes, state


def test_warning_event_reported_on_first_occurrence_with_its_data():
    changes, state = feed(event())
    assert [(c.title, c.kind, c.reason, c.namespace) for c in changes] == [
        ("K8s Event [Warning]: BackOff - Pod/api-7d9f", "Event", "BackOff", "shop")
    ]
    assert changes[0].timestamp == datetime(2024, 5, 2, 11, 0, 0, tzinfo=UTC)
    assert changes[0].data == {
        "summary": "Warning BackOff on Pod/api-7d9f from kubelet: Back-off restarting failed container app in pod api-7d9f",
        "reason": "BackOff", "message": "Back-off restarting failed container app in pod api-7d9f", "type": "Warning",
        "count": 1, "firstTimestamp": "2024-05-02T11:00:00Z", "lastTimestamp": "2024-05-02T11:00:00Z",
        "involvedObject": {"kind": "Pod", "name": "api-7d9f", "namespace": "shop"}, "source": "kubelet",
    }
    assert changes[0].external_id == f"k8s:prod:Event:shop/api-7d9f.17c9a1b2c3d4e5f6:{UID}:BackOff:1"
    assert (state.uid, state.name, state.namespace, state.resource_version) == (UID, "api-7d9f.17c9a1b2c3d4e5f6", "shop", "100")


def test_normal_events_reported_only_for_listed_reasons():
    assert [c.title for c in feed(event(type_="Normal", reason="Pulled"))[0]] == ["K8s Event [Normal]: Pulled - Pod/api-7d9f"]
    assert feed(event(type_="Normal", reason="SandboxChanged"))[0] == []
    assert feed(event(type_="Normal", reason="LeaderElection"))[0] == []


def test_repeats_inside_the_window_are_coalesced_then_one_after_it_carries_the_current_count():
    changes, state = feed(
        event(count=1, last="2024-05-02T11:00:00Z"),
        event(count=2, last="2024-05-02T11:01:00Z", rv="101"),
        event(count=5, last="2024-05-02T11:04:59Z", rv="102"),
        event(count=6, last="2024-05-02T11:05:00Z", rv="103"),
        event(count=7, last="2024-05-02T11:06:00Z", rv="104"),
    )
    assert [c.data["count"] for c in changes] == [1, 6]
    assert changes[1].timestamp == datetime(2024, 5, 2, 11, 5, 0, tzinfo=UTC)
    assert changes[1].external_id.endswith(":BackOff:6")
    assert (state.reported_count, state.reported_last) == (6, "2024-05-02T11:05:00Z")


def test_repeat_window_is_measured_on_event_timestamps_not_the_observation_clock():
    late = DetectContext(cluster="prod", observed_at=datetime(2030, 1, 1, tzinfo=UTC), event_repeat_window=300)
    first = project("events", event(count=1))
    changes, _ = detect("events", first, project("events", event(count=2, last="2024-05-02T11:01:00Z")), deleted=False, ctx=late)
    assert changes == []


def test_event_already_listed_at_baseline_repeats_only_after_the_window():
    assert feed(event(count=3), event(count=4, last="2024-05-02T11:02:00Z"), baseline=True)[0] == []
    assert [c.data["count"] for c in feed(event(count=3), event(count=4, last="2024-05-02T11:06:00Z"), baseline=True)[0]] == [4]


def test_deleting_an_event_reports_nothing():
    assert detect("events", project("events", event()), project("events", event()), deleted=True, ctx=CTX) == ([], None)
    assert detect("events", project("events", event()), None, deleted=True, ctx=CTX) == ([], None)


def test_event_with_null_last_timestamp_uses_series_and_event_time():
    changes, _ = feed(series_event(count=2))
    assert len(changes) == 1
    data = changes[0].data
    assert (data["count"], data["firstTimestamp"], data["lastTimestamp"], data["source"]) == (
        2, "2024-05-02T11:00:00.000000Z", "2024-05-02T11:00:00.250000Z", "kubelet"
    )
    assert changes[0].timestamp == datetime(2024, 5, 2, 11, 0, 0, 250000, tzinfo=UTC)
    without_series = series_event()
    without_series["series"] = None
    assert feed(without_series)[0][0].timestamp == datetime(2024, 5, 2, 11, 0, tzinfo=UTC)


def test_external_ids_equal_via_watch_and_relist_and_unique_per_reported_count():
    via_watch = feed(event(count=1))[0]
    via_relist = feed(event(count=1, rv="180"))[0]
    assert [c.external_id for c in via_watch] == [c.external_id for c in via_relist]
    later = feed(event(count=1), event(count=9, last="2024-05-02T11:10:00Z"))[0]
    assert len({c.external_id for c in later}) == 2


def test_event_with_a_1mb_message_stays_under_100kb():
    changes, _ = feed(event(message="m" * 1_000_000))
    assert len(json.dumps(changes[0].data).encode()) < 100_000
    assert changes[0].data["message"].endswith(common.TRUNCATED)
