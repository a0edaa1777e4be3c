"""The detection package as a whole: dispatcher, external ids, size bounds, timestamps."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from painchain_connector.detecting import RESOURCES, common, detect, project
from painchain_connector.model import DetectContext

CTX = DetectContext(cluster="prod", observed_at=datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC))


def minimal(resource: str) -> dict:
    return {
        "metadata": {"name": "x", "namespace": "ns", "uid": "u-1", "resourceVersion": "7", "generation": 1,
                     "creationTimestamp": "2024-05-01T09:00:00Z"},
        "spec": {}, "status": {"phase": "Running"}, "type": "Warning", "reason": "Failed",
        "lastTimestamp": "2024-05-01T09:00:00Z",
    }


def test_every_resource_has_its_kind_and_reports_creation_of_a_sparse_object():
    assert RESOURCES == {"pods": "Pod", "deployments": "Deployment", "services": "Service",
                         "statefulsets": "StatefulSet", "daemonsets": "DaemonSet", "events": "Event"}
    for resource, kind in RESOURCES.items():
        compact = project(resource, minimal(resource))
        assert (compact.uid, compact.name, compact.namespace, compact.resource_version) == ("u-1", "x", "ns", "7")
        changes, state = detect(resource, None, compact, deleted=False, ctx=CTX)
        assert [c.kind for c in changes] == [kind], resource
        assert changes[0].timestamp.tzinfo is not None and changes[0].timestamp.utcoffset().total_seconds() == 0
        json.dumps(changes[0].data)
        assert state is not None
        assert list(changes[0].data)[0] == "summary" and changes[0].data["summary"], resource


def _empties(value, path="data"):
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _empties(item, f"{path}.{key}")] + (
            [path] if not value else [])
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _empties(item, f"{path}[{i}]")] + ([path] if not value else [])
    return [path] if value is None or value == "" else []


def test_event_data_of_a_sparse_object_has_no_null_or_empty_field():
    # PainChain's detail view renders data generically: "Signal: null" and "Labels: {}" are clutter.
    for resource in RESOURCES:
        sparse = minimal(resource)
        changes, _ = detect(resource, None, project(resource, sparse), deleted=False, ctx=CTX)
        gone, _ = detect(resource, project(resource, sparse), None, deleted=True, ctx=CTX)
        for change in changes + gone:
            assert _empties(change.data) == [], (resource, change.title)


def test_unknown_resource_is_rejected():
    with pytest.raises(ValueError):
        project("ingresses", {})
    with pytest.raises(ValueError):
        detect("ingresses", None, None, deleted=False, ctx=CTX)


def test_long_external_id_hashes_its_tail_but_keeps_a_readable_prefix():
    name = "n" * 253
    first = common.external_id(CTX, "Pod", "ns", name, "u-1", "Terminated", "app", "abc", "2024-05-01T09:00:00Z")
    second = common.external_id(CTX, "Pod", "ns", name, "u-1", "Terminated", "app", "abd", "2024-05-01T09:00:00Z")
    assert len(first) < 255 and len(second) < 255
    assert first.startswith("k8s:prod:Pod:ns/nnnn") and ":Terminated:" in first
    assert first != second
    assert first == common.external_id(CTX, "Pod", "ns", name, "u-1", "Terminated", "app", "abc", "2024-05-01T09:00:00Z")


def test_oversized_data_drops_its_largest_fields_with_a_marker():
    data = common.bounded({"name": "x", "blob": "b" * 200_000, "other": ["o" * 100] * 10})
    assert data["truncated"] is True and data["droppedFields"] == ["blob"]
    assert data["name"] == "x" and len(json.dumps(data)) < 100_000


def test_naive_observed_at_is_taken_as_utc():
    naive = DetectContext(cluster="prod", observed_at=datetime(2024, 5, 2, 12, 0, 0))
    changes, _ = detect("services", project("services", minimal("services")), None, deleted=True, ctx=naive)
    assert changes[0].timestamp == datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC)
