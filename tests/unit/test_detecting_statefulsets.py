"""StatefulSet detection: Created, Deleted, Scaled, Updated; status churn is silent."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from painchain_connector.detecting import detect, project
from painchain_connector.model import DetectContext

OBSERVED = datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC)
CTX = DetectContext(cluster="prod", observed_at=OBSERVED)
UID = "5e5e5e5e-1111-2222-3333-444455556666"


def statefulset(*, generation=1, replicas=3, image="example.com/db:15", ready=3, current=3, updated=3, rv="100",
                spec_written="2024-05-01T09:00:00Z"):
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "db", "namespace": "data", "uid": UID, "resourceVersion": rv, "generation": generation,
            "creationTimestamp": "2024-05-01T09:00:00Z", "labels": {"app": "db"},
            "managedFields": [
                {"manager": "helm", "operation": "Update", "time": spec_written},
                {"manager": "kube-controller-manager", "operation": "Update", "time": "2024-05-02T11:59:00Z", "subresource": "status"},
            ],
        },
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "postgres", "image": image}]}},
        },
        "status": {"observedGeneration": generation, "replicas": current, "readyReplicas": ready,
                   "currentReplicas": current, "updatedReplicas": updated, "availableReplicas": ready},
    }


def step(old, new, *, deleted=False):
    return detect("statefulsets", project("statefulsets", old) if old else None,
                  project("statefulsets", new) if new else None, deleted=deleted, ctx=CTX)


def test_new_statefulset_reports_created_with_replica_counts_and_images():
    changes, state = step(None, statefulset(ready=0, current=0, updated=0))
    assert [(c.title, c.kind, c.reason) for c in changes] == [("StatefulSet Created: db", "StatefulSet", "Created")]
    data = changes[0].data
    assert (data["replicas"], data["readyReplicas"], data["currentReplicas"], data["updatedReplicas"]) == (3, 0, 0, 0)
    assert data["images"] == [{"container": "postgres", "image": "example.com/db:15"}]
    assert data["labels"] == {"app": "db"} and data["namespace"] == "data"
    assert changes[0].timestamp == datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
    assert (state.uid, state.name, state.namespace, state.resource_version) == (UID, "db", "data", "100")


def test_replica_change_reports_scaled_only():
    changes, _ = step(statefulset(), statefulset(generation=2, replicas=5, rv="101", spec_written="2024-05-02T11:00:00Z"))
    assert [c.title for c in changes] == ["StatefulSet Scaled: db (3 → 5)"]
    assert changes[0].timestamp == datetime(2024, 5, 2, 11, 0, 0, tzinfo=UTC)
    assert changes[0].external_id == f"k8s:prod:StatefulSet:data/db:{UID}:Scaled:2"


def test_image_change_reports_updated_with_old_and_new_image():
    changes, _ = step(statefulset(), statefulset(generation=2, image="example.com/db:16", rv="101"))
    assert [c.title for c in changes] == [
        "StatefulSet Updated: db: containers[postgres].image example.com/db:15 → example.com/db:16"]
    assert changes[0].data["changes"] == [{"path": "containers[postgres].image", "change": "changed",
                                           "old": "example.com/db:15", "new": "example.com/db:16"}]


def test_status_churn_and_identical_resync_report_nothing():
    assert step(statefulset(ready=1), statefulset(ready=2, rv="101"))[0] == []
    assert step(statefulset(), statefulset())[0] == []


def test_vanished_statefulset_reports_deleted_at_observed_time():
    changes, state = detect("statefulsets", project("statefulsets", statefulset()), None, deleted=True, ctx=CTX)
    assert [c.title for c in changes] == ["StatefulSet Deleted: db"] and state is None
    assert changes[0].timestamp == OBSERVED
    json.dumps(changes[0].data)


def test_summaries_count_replicas_in_words():
    created = step(None, statefulset(replicas=1))[0][0]
    assert created.data["summary"] == "StatefulSet db created: 1 replica of example.com/db:15"
    scaled = step(statefulset(replicas=1), statefulset(generation=2, replicas=0, rv="101"))[0][0]
    assert scaled.data["summary"] == "StatefulSet db scaled from 1 to 0 replicas"
    assert (scaled.data["replicas"], scaled.data["previousReplicas"]) == (0, 1)  # 0 is a fact, not an empty field
