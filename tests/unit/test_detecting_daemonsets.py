"""DaemonSet detection: Created, Deleted, Updated; node-count churn is silent, nothing is Scaled."""
from __future__ import annotations

from datetime import UTC, datetime

from painchain_connector.detecting import detect, project
from painchain_connector.model import DetectContext

OBSERVED = datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC)
CTX = DetectContext(cluster="prod", observed_at=OBSERVED)
UID = "dada0000-1111-2222-3333-444455556666"


def daemonset(*, generation=1, image="example.com/agent:1", desired=4, ready=4, unavailable=0, rv="100"):
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "kube-system", "uid": UID, "resourceVersion": rv,
                     "generation": generation, "creationTimestamp": "2024-05-01T09:00:00Z", "labels": {"app": "agent"},
                     "managedFields": [{"manager": "kubectl", "operation": "Update", "time": "2024-05-02T10:00:00Z"}]},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"containers": [{"name": "agent", "image": image}]}},
        },
        "status": {"desiredNumberScheduled": desired, "currentNumberScheduled": desired, "numberReady": ready,
                   "numberUnavailable": unavailable, "observedGeneration": generation},
    }


def step(old, new, *, deleted=False):
    return detect("daemonsets", project("daemonsets", old) if old else None,
                  project("daemonsets", new) if new else None, deleted=deleted, ctx=CTX)


def test_new_daemonset_reports_created_with_scheduling_counts():
    changes, _ = step(None, daemonset(ready=0, unavailable=4))
    assert [c.title for c in changes] == ["DaemonSet Created: agent"]
    data = changes[0].data
    assert (data["desiredNumberScheduled"], data["currentNumberScheduled"], data["numberReady"], data["numberUnavailable"]) == (4, 4, 0, 4)
    assert data["images"] == [{"container": "agent", "image": "example.com/agent:1"}] and data["labels"] == {"app": "agent"}


def test_image_change_reports_updated_at_spec_write_time():
    changes, _ = step(daemonset(), daemonset(generation=2, image="example.com/agent:2", rv="101"))
    assert [(c.title, c.reason) for c in changes] == [
        ("DaemonSet Updated: agent: containers[agent].image example.com/agent:1 → example.com/agent:2", "Updated")]
    assert changes[0].data["changes"] == [{"path": "containers[agent].image", "change": "changed",
                                           "old": "example.com/agent:1", "new": "example.com/agent:2"}]
    assert changes[0].timestamp == datetime(2024, 5, 2, 10, 0, 0, tzinfo=UTC)
    assert changes[0].external_id == f"k8s:prod:DaemonSet:kube-system/agent:{UID}:Updated:2"


def test_node_count_churn_reports_nothing():
    assert step(daemonset(), daemonset(desired=5, ready=4, unavailable=1, rv="101"))[0] == []
    assert step(daemonset(desired=5, ready=4, unavailable=1), daemonset(desired=5, ready=5, rv="102"))[0] == []


def test_deleted_daemonset_reports_deleted():
    changes, state = step(daemonset(), daemonset(rv="200"), deleted=True)
    assert [c.title for c in changes] == ["DaemonSet Deleted: agent"] and state is None
