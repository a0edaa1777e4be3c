"""Correlation in event data: pod owners, the rollout a failure follows, who changed a workload."""
from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from painchain_connector.correlating import Correlation, project_owner
from painchain_connector.detecting import detect, project
from painchain_connector.model import DetectContext
from painchain_connector.watching import Store
from tests.unit.test_detecting_deployments import deployment
from tests.unit.test_detecting_pods import pod, terminated_state, waiting

OBSERVED = datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC)
RS_UID, JOB_UID = "rs-0000-1111", "job-0000-1111"


def owned(obj: dict, kind: str, name: str, uid: str, labels: dict | None = None) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid,
                                           "controller": True, "blockOwnerDeletion": True}]
    if labels is not None:
        obj["metadata"]["labels"] = labels
    return obj


def owner_object(uid: str, name: str, owner: tuple | None, revision: str | None = None) -> dict:
    meta = {"uid": uid, "name": name, "namespace": "shop", "resourceVersion": "7"}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "uid": "x", "controller": True}]
    if revision:
        meta["annotations"] = {"deployment.kubernetes.io/revision": revision}
    return {"metadata": meta}


def indexed(*entries: tuple[str, dict]) -> Correlation:
    correlation = Correlation()
    for kind, obj in entries:
        entry = project_owner("", obj)
        correlation.stores.setdefault((kind, ""), Store()).objects[entry.uid] = entry
    return correlation


def ctx(correlation=None, *, at=OBSERVED, window=900.0) -> DetectContext:
    return DetectContext(cluster="prod", observed_at=at, correlation=correlation, rollout_window=window)


def crash(old_obj: dict, *, finished="2024-05-02T11:58:00Z", context=None):
    """A running pod whose container exits 1 and enters CrashLoopBackOff."""
    last = terminated_state(1, finished=finished)
    new_obj = copy.deepcopy(old_obj)
    new_obj["metadata"]["resourceVersion"] = "101"
    new_obj["status"]["containerStatuses"] = [waiting(restarts=1, last=last)]
    changes, _ = detect("pods", project("pods", old_obj, 1.0), project("pods", new_obj, 2.0), deleted=False,
                        ctx=context or ctx())
    return changes


def rollout_update(correlation: Correlation, *, spec_written="2024-05-02T11:50:00Z", revision="1"):
    """Deployment web (revision annotation still `revision`) gets image 2.0: the Updated change is recorded."""
    old = deployment()
    old["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": revision}
    new = deployment(generation=2, image="example.com/web:2.0", spec_written=spec_written, rv="101")
    new["metadata"]["annotations"] = dict(old["metadata"]["annotations"])
    changes, _ = detect("deployments", project("deployments", old, 1.0), project("deployments", new, 2.0),
                        deleted=False, ctx=ctx())
    correlation.record(changes)
    return [c for c in changes if c.reason == "Updated"][0]


DEPLOYMENT_POD = owned(pod(), "ReplicaSet", "web-7d9f", RS_UID, {"app": "web", "pod-template-hash": "7d9f"})


def test_pod_of_a_deployment_names_the_deployment_and_its_revision_through_the_replicaset():
    correlation = indexed(("ReplicaSet", owner_object(RS_UID, "web-7d9f", ("Deployment", "web"), "2")))
    [change] = crash(DEPLOYMENT_POD, context=ctx(correlation))
    assert change.data["owner"] == {"kind": "Deployment", "name": "web"}
    assert change.data["ownerSummary"] == "Deployment web"
    assert (change.data["revision"], change.data["podTemplateHash"]) == ("2", "7d9f")


def test_without_the_replicaset_the_naming_rule_names_the_deployment_without_revision():
    [change] = crash(DEPLOYMENT_POD, context=ctx(Correlation()))
    assert change.data["owner"] == {"kind": "Deployment", "name": "web"}
    assert "revision" not in change.data


def test_pods_of_a_bare_replicaset_a_cronjob_a_statefulset_and_a_bare_pod():
    bare_rs = owned(pod(), "ReplicaSet", "cache", RS_UID, {"app": "cache"})
    job_pod = owned(pod(), "Job", "report-28731600", JOB_UID, {"job-name": "report-28731600"})
    stateful = owned(pod(), "StatefulSet", "db", "ss-uid", {"app": "db", "controller-revision-hash": "db-5c8f"})
    correlation = indexed(("ReplicaSet", owner_object(RS_UID, "cache", None)),
                          ("Job", owner_object(JOB_UID, "report-28731600", ("CronJob", "report"))))
    owners = {}
    for name, obj in (("rs", bare_rs), ("job", job_pod), ("sts", stateful), ("bare", pod(labels={"app": "x"}))):
        [change] = crash(obj, context=ctx(correlation))
        owners[name] = change.data.get("owner")
    assert owners == {"rs": {"kind": "ReplicaSet", "name": "cache"}, "job": {"kind": "CronJob", "name": "report"},
                      "sts": {"kind": "StatefulSet", "name": "db"}, "bare": None}
    [change] = crash(stateful, context=ctx(correlation))
    assert change.data["controllerRevisionHash"] == "db-5c8f"


def test_crash_loop_soon_after_a_rollout_names_the_deployment_revision_and_updated_event():
    correlation = indexed(("ReplicaSet", owner_object(RS_UID, "web-7d9f", ("Deployment", "web"), "2")))
    updated = rollout_update(correlation)
    assert updated.data["revision"] == "2"  # the controller writes the annotation after the spec: predicted
    [change] = crash(DEPLOYMENT_POD, context=ctx(correlation))
    rollout = change.data["rollout"]
    assert (rollout["kind"], rollout["name"], rollout["revision"]) == ("Deployment", "web", "2")
    assert rollout["externalId"] == updated.external_id
    assert rollout["startedAt"] == "2024-05-02T11:50:00Z"
    assert rollout["images"] == [{"container": "web", "image": "example.com/web:2.0"}]
    assert change.title == "Pod CrashLoopBackOff: api-7d9f after rollout of Deployment web to revision 2"
    assert change.data["rolloutSummary"] == "Deployment web to revision 2, started 2024-05-02T11:50:00Z"


def test_a_failure_outside_the_rollout_window_or_before_the_rollout_names_no_rollout():
    correlation = indexed(("ReplicaSet", owner_object(RS_UID, "web-7d9f", ("Deployment", "web"), "2")))
    rollout_update(correlation, spec_written="2024-05-02T11:00:00Z")
    [late] = crash(DEPLOYMENT_POD, finished="2024-05-02T11:58:00Z", context=ctx(correlation, window=600))
    [early] = crash(DEPLOYMENT_POD, finished="2024-05-02T10:58:00Z", context=ctx(correlation))
    assert "rollout" not in late.data and "rollout" not in early.data
    assert "after rollout" not in late.title


def test_routine_pod_events_carry_the_owner_but_no_rollout():
    correlation = indexed(("ReplicaSet", owner_object(RS_UID, "web-7d9f", ("Deployment", "web"), "2")))
    rollout_update(correlation)
    pending = copy.deepcopy(DEPLOYMENT_POD)
    pending["status"]["phase"] = "Pending"
    [created], _ = detect("pods", project("pods", pending), project("pods", DEPLOYMENT_POD), deleted=False,
                          ctx=ctx(correlation))
    assert created.reason == "Created" and created.data["owner"]["name"] == "web" and "rollout" not in created.data


def test_scale_names_the_manager_of_spec_replicas_and_an_image_change_the_manager_of_the_image():
    fields = {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}}}
    base = deployment()
    base["metadata"]["managedFields"] = [
        {"manager": "helm", "operation": "Update", "time": "2024-05-01T10:00:00Z", "fieldsV1": fields}]
    scaled = deployment(generation=2, replicas=5, rv="101")
    scaled["metadata"]["managedFields"] = base["metadata"]["managedFields"] + [
        {"manager": "kubectl", "operation": "Update", "time": "2024-05-02T11:00:00Z",
         "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "time": "2024-05-02T11:00:01Z",
         "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}}]
    imaged = deployment(generation=3, replicas=5, image="example.com/web:2.0", rv="102")
    imaged["metadata"]["managedFields"] = scaled["metadata"]["managedFields"] + [
        {"manager": "argocd", "operation": "Update", "time": "2024-05-02T11:05:00Z",
         "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}}}}]
    created, _ = detect("deployments", None, project("deployments", base), deleted=False, ctx=ctx())
    found = {}
    state = project("deployments", base, 1.0)
    for obj in (scaled, imaged):
        changes, state = detect("deployments", state, project("deployments", obj, 2.0), deleted=False, ctx=ctx())
        found.update({c.reason: c.data.get("changedBy") for c in changes if c.reason in ("Scaled", "Updated")})
    assert created[0].data["changedBy"] == "helm"
    assert found == {"Scaled": "kubectl", "Updated": "argocd"}


def test_deployment_events_carry_revision_and_change_cause():
    obj = deployment()
    obj["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "7", "kubernetes.io/change-cause": "deploy 7"}
    changes, _ = detect("deployments", None, project("deployments", obj), deleted=False, ctx=ctx())
    created = changes[0]
    assert created.reason == "Created" and (created.data["revision"], created.data["changeCause"]) == ("7", "deploy 7")


def test_service_created_names_its_creator():
    obj = {"metadata": {"name": "web", "namespace": "shop", "uid": "s1", "resourceVersion": "1",
                        "creationTimestamp": "2024-05-01T09:00:00Z",
                        "managedFields": [{"manager": "kustomize-controller", "operation": "Apply",
                                           "time": "2024-05-01T09:00:00Z", "fieldsV1": {"f:spec": {"f:ports": {}}}}]},
           "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    [created], _ = detect("services", None, project("services", obj), deleted=False, ctx=ctx())
    assert created.data["changedBy"] == "kustomize-controller"


def test_rollouts_kept_per_workload_are_bounded_and_deduplicated():
    correlation = Correlation()
    updated = rollout_update(correlation)
    for minutes in range(5):
        correlation.record([replace(updated, external_id=f"id-{minutes}",
                                    timestamp=updated.timestamp + timedelta(minutes=minutes))])
    correlation.record([updated])
    kept = correlation.rollouts("shop", "Deployment", "web")
    assert [r.external_id for r in kept] == ["id-3", "id-4", updated.external_id]
