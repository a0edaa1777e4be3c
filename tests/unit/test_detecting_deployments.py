"""Deployment detection: lifecycle, Scaled vs Updated, and rollout outcomes."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from painchain_connector.detecting import detect, project
from painchain_connector.model import DetectContext

OBSERVED = datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC)
CTX = DetectContext(cluster="prod", observed_at=OBSERVED)
UID = "0d0d0d0d-1111-2222-3333-444455556666"


def deployment(
    *,
    generation=1,
    observed=None,
    replicas=3,
    image="example.com/web:1.0",
    ready=None,
    available=None,
    updated=None,
    current=None,
    progressing=("True", "NewReplicaSetAvailable", "2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z"),
    spec_written="2024-05-01T10:00:00Z",
    status_written="2024-05-01T10:01:00Z",
    rv="100",
    env=1,
    strategy=None,
    restarted_at=None,
):
    """A Deployment as the apiserver returns it; status counts default to a finished rollout."""
    settled = replicas
    template_meta = {"labels": {"app": "web"}}
    if restarted_at:
        template_meta["annotations"] = {"kubectl.kubernetes.io/restartedAt": restarted_at}
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": UID,
            "resourceVersion": rv,
            "generation": generation,
            "creationTimestamp": "2024-05-01T09:00:00Z",
            "labels": {"app": "web", "team": "shop"},
            "managedFields": [
                {"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1", "time": spec_written},
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
                 "time": status_written, "subresource": "status"},
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": template_meta,
                "spec": {"containers": [{"name": "web", "image": image, "env": [{"name": f"E{i}", "value": "1"} for i in range(env)]}]},
            },
            "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": generation if observed is None else observed,
            "replicas": settled if current is None else current,
            "readyReplicas": settled if ready is None else ready,
            "availableReplicas": settled if available is None else available,
            "updatedReplicas": settled if updated is None else updated,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "lastTransitionTime": "2024-05-01T10:00:00Z", "lastUpdateTime": "2024-05-01T10:00:00Z"},
            ],
        },
    }
    if progressing:
        status, reason, transition, update = progressing
        obj["status"]["conditions"].append(
            {"type": "Progressing", "status": status, "reason": reason,
             "lastTransitionTime": transition, "lastUpdateTime": update}
        )
    return obj


def run(*objects, start_new=False):
    """Feed raw objects in order (the first is a baseline unless start_new); all changes + last state."""
    state = None if start_new else project("deployments", objects[0])
    changes = []
    for obj in objects if start_new else objects[1:]:
        found, state = detect("deployments", state, project("deployments", obj), deleted=False, ctx=CTX)
        changes += found
    return changes, state


IN_PROGRESS = ("True", "ReplicaSetUpdated", "2024-05-01T10:00:00Z", "2024-05-02T11:00:00Z")
DONE = ("True", "NewReplicaSetAvailable", "2024-05-01T10:00:00Z", "2024-05-02T11:03:00Z")


def test_new_deployment_reports_created_at_its_creation_timestamp():
    changes, state = run(deployment(generation=1, observed=0, ready=0, available=0, updated=0, current=0, progressing=None), start_new=True)
    assert [(c.title, c.reason, c.kind, c.namespace) for c in changes] == [("Deployment Created: web", "Created", "Deployment", "shop")]
    assert changes[0].timestamp == datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
    data = changes[0].data
    assert (data["replicas"], data["readyReplicas"], data["availableReplicas"], data["updatedReplicas"]) == (3, 0, 0, 0)
    assert data["image"] == "example.com/web:1.0" and data["imagesSummary"] == "web=example.com/web:1.0"
    assert data["summary"] == "Deployment web created: 3 replicas of example.com/web:1.0"
    assert data["images"] == [{"container": "web", "image": "example.com/web:1.0"}]
    assert data["strategy"] == "RollingUpdate(maxSurge=25%, maxUnavailable=25%)"
    assert data["labels"] == {"app": "web", "team": "shop"}
    assert (state.uid, state.name, state.namespace, state.resource_version) == (UID, "web", "shop", "100")


def test_scale_reports_scaled_only_at_the_spec_write_time():
    changes, _ = run(
        deployment(),
        deployment(generation=2, replicas=5, ready=3, available=3, updated=3, current=3,
                   spec_written="2024-05-02T11:00:00Z", status_written="2024-05-02T11:00:09Z", rv="101"),
        deployment(generation=2, replicas=5, spec_written="2024-05-02T11:00:00Z", status_written="2024-05-02T11:00:30Z", rv="102"),
    )
    assert [c.title for c in changes] == ["Deployment Scaled: web (3 → 5)"]
    assert changes[0].data["changed"] == {"replicas": {"old": 3, "new": 5}}
    assert (changes[0].data["replicas"], changes[0].data["previousReplicas"]) == (5, 3)
    assert changes[0].data["summary"] == "Deployment web scaled from 3 to 5 replicas"
    assert changes[0].timestamp == datetime(2024, 5, 2, 11, 0, 0, tzinfo=UTC)  # not the newer status write


def test_image_change_reports_updated_with_old_and_new_image_then_rollout_complete_once():
    changes, state = run(
        deployment(),
        deployment(generation=2, observed=1, image="example.com/web:1.1", progressing=IN_PROGRESS, updated=0, rv="101"),
        deployment(generation=2, image="example.com/web:1.1", progressing=IN_PROGRESS, updated=1, current=4, available=3, rv="102"),
        deployment(generation=2, image="example.com/web:1.1", progressing=DONE, rv="103"),
        deployment(generation=2, image="example.com/web:1.1", progressing=DONE, ready=2, available=2, rv="104"),  # a pod dies
        deployment(generation=2, image="example.com/web:1.1", progressing=DONE, rv="105"),  # and comes back
    )
    assert [c.title for c in changes] == [
        "Deployment Updated: web: containers[web].image example.com/web:1.0 → example.com/web:1.1",
        "Deployment Rollout Complete: web"]
    updated, complete = changes
    assert updated.data["changes"] == [{"path": "containers[web].image", "change": "changed",
                                        "old": "example.com/web:1.0", "new": "example.com/web:1.1"}]
    assert (updated.data["image"], updated.data["previousImage"]) == ("example.com/web:1.1", "example.com/web:1.0")
    assert updated.data["summary"] == (
        "Deployment web updated to generation 2: containers[web].image example.com/web:1.0 → example.com/web:1.1")
    assert updated.reason == "Updated" and complete.reason == "RolloutComplete"
    assert complete.timestamp == datetime(2024, 5, 2, 11, 3, 0, tzinfo=UTC)  # Progressing update time
    assert state.done_generation == 2


def test_scale_and_image_change_in_one_step_report_scaled_and_updated():
    changes, _ = run(deployment(), deployment(generation=3, replicas=5, image="example.com/web:2.0", observed=1, rv="150"))
    assert [c.reason for c in changes] == ["Scaled", "Updated"]


def test_pure_scale_does_not_report_a_rollout():
    changes, _ = run(
        deployment(),
        deployment(generation=2, replicas=1, observed=1, rv="101"),
        deployment(generation=2, replicas=1, rv="102"),
    )
    assert [c.reason for c in changes] == ["Scaled"]


def test_status_only_churn_reports_nothing():
    changes, _ = run(
        deployment(ready=1, available=1),
        deployment(ready=2, available=2, rv="101"),
        deployment(ready=3, available=3, rv="102"),
        deployment(ready=3, available=3, rv="102"),  # resync with the identical object
    )
    assert changes == []


def test_rollout_stuck_reported_on_transition_into_deadline_exceeded():
    stuck = ("False", "ProgressDeadlineExceeded", "2024-05-02T11:10:00Z", "2024-05-02T11:10:00Z")
    changes, _ = run(
        deployment(generation=2, image="example.com/web:9", progressing=IN_PROGRESS, updated=1, current=4),
        deployment(generation=2, image="example.com/web:9", progressing=stuck, updated=1, current=4, rv="101"),
        deployment(generation=2, image="example.com/web:9", progressing=stuck, updated=1, current=4, rv="102"),
    )
    assert [(c.title, c.reason) for c in changes] == [("Deployment Rollout Stuck: web", "RolloutStuck")]
    assert changes[0].timestamp == datetime(2024, 5, 2, 11, 10, 0, tzinfo=UTC)
    assert (changes[0].data["reason"], changes[0].data["progressing"]) == ("ProgressDeadlineExceeded", "False")
    assert changes[0].data["summary"] == (
        "Deployment web rollout stuck at generation 2 (ProgressDeadlineExceeded): 1/3 updated, 3 available")


def test_baseline_mid_rollout_reports_complete_when_it_finishes():
    changes, _ = run(
        deployment(generation=4, progressing=IN_PROGRESS, updated=1, current=4),
        deployment(generation=4, progressing=DONE, rv="101"),
    )
    assert [c.title for c in changes] == ["Deployment Rollout Complete: web"]


def test_baseline_with_a_pod_down_recovering_reports_nothing():
    changes, _ = run(deployment(generation=4, ready=2, available=2), deployment(generation=4, rv="101"))
    assert changes == []


def test_rollout_restart_strategy_and_env_changes_are_described():
    recreate = {"type": "Recreate"}
    changes, _ = run(
        deployment(),
        deployment(generation=2, observed=1, restarted_at="2024-05-02T11:00:00Z", strategy=recreate, env=3, rv="101"),
    )
    assert changes[0].data["changes"] == [
        {"path": "containers[web].env.E1", "change": "added"},
        {"path": "containers[web].env.E2", "change": "added"},
        {"path": "template.annotations.kubectl.kubernetes.io/restartedAt", "change": "added",
         "new": "2024-05-02T11:00:00Z"},
        {"path": "strategy", "change": "changed", "old": "RollingUpdate(maxSurge=25%, maxUnavailable=25%)",
         "new": "Recreate"},
    ]
    assert changes[0].title == (
        "Deployment Updated: web: containers[web].env.E1 added, containers[web].env.E2 added, "
        "template.annotations.kubectl.kubernetes.io/restartedAt added (2024-05-02T11:00:00Z) and 1 more")
    assert (changes[0].data["generation"], changes[0].data["previousGeneration"]) == (2, 1)
    assert changes[0].data["changesSummary"].endswith("; strategy RollingUpdate(maxSurge=25%, maxUnavailable=25%) → Recreate")


def test_deleted_deployment_reports_deleted_and_stores_nothing():
    final = deployment(rv="300")
    final["metadata"]["deletionTimestamp"] = "2024-05-02T11:30:00Z"
    changes, state = detect("deployments", project("deployments", deployment()), project("deployments", final), deleted=True, ctx=CTX)
    assert [c.title for c in changes] == ["Deployment Deleted: web"] and state is None
    assert changes[0].timestamp == datetime(2024, 5, 2, 11, 30, 0, tzinfo=UTC)
    vanished, _ = detect("deployments", project("deployments", deployment()), None, deleted=True, ctx=CTX)
    assert vanished[0].external_id == changes[0].external_id and vanished[0].timestamp == OBSERVED


def test_external_ids_equal_via_watch_and_relist_and_unique_across_changes():
    base = deployment()
    scaled_watch = deployment(generation=2, replicas=5, observed=1, rv="101")
    scaled_later = deployment(generation=2, replicas=5, ready=4, available=4, rv="180")
    watch, _ = run(base, scaled_watch)
    relist, _ = run(base, scaled_later)
    assert [c.external_id for c in watch] == [c.external_id for c in relist]
    assert watch[0].external_id == f"k8s:prod:Deployment:shop/web:{UID}:Scaled:2"
    ids = [c.external_id for c in watch]
    ids += [c.external_id for c in run(scaled_later,
                                       deployment(generation=3, replicas=5, image="x:2", progressing=IN_PROGRESS,
                                                  observed=2, rv="200"),
                                     deployment(generation=3, replicas=5, image="x:2", rv="201"))[0]]
    ids += [c.external_id for c in run(base, deployment(generation=4, replicas=2, rv="300"))[0]]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert all(json.dumps(c.data) for c in watch)


def test_scale_by_the_manager_that_created_it_is_stamped_at_its_observation_not_at_creation():
    # The real apiserver keeps a managedFields entry's time when its manager changes a field
    # it already owns: after `kubectl scale` the newest spec write still says 10:00.
    seen = datetime(2024, 5, 2, 11, 0, 0, tzinfo=UTC).timestamp()
    base = project("deployments", deployment(spec_written="2024-05-01T10:00:00Z"), seen)
    scaled = project("deployments", deployment(generation=2, replicas=5, spec_written="2024-05-01T10:00:00Z", rv="101"),
                     seen + 60.5)
    changes, _ = detect("deployments", base, scaled, deleted=False, ctx=CTX)
    assert [(c.reason, c.timestamp) for c in changes] == [("Scaled", datetime(2024, 5, 2, 11, 1, 0, 500000, tzinfo=UTC))]
    moved = project("deployments", deployment(generation=2, replicas=5, spec_written="2024-05-02T11:00:30Z", rv="101"),
                    seen + 60.5)
    assert detect("deployments", base, moved, deleted=False, ctx=CTX)[0][0].timestamp == datetime(
        2024, 5, 2, 11, 0, 30, tzinfo=UTC)  # a write after our sighting: its own time
