"""Detection scenarios on the real apiserver: Deployments, StatefulSets and DaemonSets.

No controllers run here: the tests write `/status` the way the deployment controller
would. Helpers (the marker technique, `settled`) are in scenarios.py.
"""
import pytest

from tests.e2e.scenarios import T0, change, settled, watching
from tests.envtest.builders import DEFAULT_IMAGE, make_daemonset, make_deployment, make_statefulset

pytestmark = pytest.mark.e2e

NEW_IMAGE = "registry.example/app:1.1"
T1 = "2024-05-01T10:01:00Z"
IMAGE_CHANGE = [{"path": "containers[main].image", "change": "changed", "old": DEFAULT_IMAGE, "new": NEW_IMAGE}]
WEB_UPDATED = f"Deployment Updated: web: containers[main].image {DEFAULT_IMAGE} → {NEW_IMAGE}"


def new_image(image=NEW_IMAGE):
    return {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}}


def rollout(generation, *, replicas=3, updated=3, ready=3, available=3,
            progressing=("True", "NewReplicaSetAvailable"), stamp=T0):
    """A Deployment's status as the deployment controller writes it."""
    condition = {"type": "Progressing", "status": progressing[0], "reason": progressing[1],
                 "message": "rollout", "lastUpdateTime": stamp, "lastTransitionTime": T0}
    return {"status": {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": updated,
                       "readyReplicas": ready, "availableReplicas": available, "conditions": [condition]}}


# -- deployments --------------------------------------------------------------------------

def test_deployment_creation_scaling_and_deletion_are_reported(control_plane, kube, namespace):
    with watching(control_plane, namespace, "deployments") as collector:
        kube.create("deployments", namespace, make_deployment("web", replicas=3))
        kube.patch("deployments", namespace, "web", {"spec": {"replicas": 5}})
        kube.delete("deployments", namespace, "web")
        assert settled(kube, namespace, collector, "deployments") == [
            "Deployment Created: web", "Deployment Scaled: web (3 → 5)", "Deployment Deleted: web"]
        scaled = change(collector, "Deployment Scaled: web (3 → 5)")
        assert (scaled.kind, scaled.reason) == ("Deployment", "Scaled")
        assert scaled.data["changed"] == {"replicas": {"old": 3, "new": 5}}


def test_deployment_image_change_is_an_update_with_old_and_new_images(control_plane, kube, namespace):
    with watching(control_plane, namespace, "deployments") as collector:
        kube.create("deployments", namespace, make_deployment("web"))
        kube.patch("deployments", namespace, "web", new_image())
        assert settled(kube, namespace, collector, "deployments") == ["Deployment Created: web", WEB_UPDATED]
        updated = change(collector, WEB_UPDATED)
        assert updated.reason == "Updated"
        assert updated.data["changes"] == IMAGE_CHANGE
        assert (updated.data["generation"], updated.data["previousGeneration"]) == (2, 1)
        assert (updated.data["image"], updated.data["previousImage"]) == (NEW_IMAGE, DEFAULT_IMAGE)
        assert updated.data["images"] == [{"container": "main", "image": NEW_IMAGE}]


def test_deployment_rollout_complete_is_reported_once_per_generation(control_plane, kube, namespace):
    with watching(control_plane, namespace, "deployments") as collector:
        kube.create("deployments", namespace, make_deployment("web", replicas=3))
        kube.patch_status("deployments", namespace, "web", rollout(
            1, updated=1, ready=1, available=1, progressing=("True", "ReplicaSetUpdated")))
        kube.patch_status("deployments", namespace, "web", rollout(1))
        kube.patch_status("deployments", namespace, "web", rollout(1, stamp=T1))  # the controller's resync
        kube.patch("deployments", namespace, "web", new_image())
        kube.patch_status("deployments", namespace, "web", rollout(
            2, updated=1, ready=3, available=3, progressing=("True", "ReplicaSetUpdated")))
        kube.patch_status("deployments", namespace, "web", rollout(2, stamp=T1))
        assert settled(kube, namespace, collector, "deployments") == [
            "Deployment Created: web", "Deployment Rollout Complete: web",
            WEB_UPDATED, "Deployment Rollout Complete: web"]
        complete = [c for _, c in collector.items if c.reason == "RolloutComplete"]
        assert [c.data["generation"] for c in complete] == [1, 2]
        assert complete[0].external_id != complete[1].external_id


def test_deployment_rollout_stuck_is_reported_once_on_progress_deadline_exceeded(control_plane, kube, namespace):
    with watching(control_plane, namespace, "deployments") as collector:
        kube.create("deployments", namespace, make_deployment("web", replicas=2))
        progressing = dict(replicas=2, updated=1, ready=0, available=0)
        kube.patch_status("deployments", namespace, "web", rollout(1, **progressing,
                                                                   progressing=("True", "ReplicaSetUpdated")))
        for stamp in (T0, T1):  # still stuck at the next resync
            kube.patch_status("deployments", namespace, "web", rollout(
                1, **progressing, progressing=("False", "ProgressDeadlineExceeded"), stamp=stamp))
        assert settled(kube, namespace, collector, "deployments") == [
            "Deployment Created: web", "Deployment Rollout Stuck: web"]
        stuck = change(collector, "Deployment Rollout Stuck: web")
        assert stuck.reason == "RolloutStuck"
        assert (stuck.data["reason"], stuck.data["progressing"]) == ("ProgressDeadlineExceeded", "False")


def test_deployment_status_churn_reports_nothing(control_plane, kube, namespace):
    kube.create("deployments", namespace, make_deployment("web", replicas=3))
    kube.patch_status("deployments", namespace, "web", rollout(1))  # rolled out before we watch
    with watching(control_plane, namespace, "deployments") as collector:
        for ready in (1, 2, 3):  # pods die and come back
            kube.patch_status("deployments", namespace, "web", rollout(1, ready=ready, available=ready))
        assert settled(kube, namespace, collector, "deployments") == []


# -- statefulsets and daemonsets ----------------------------------------------------------

def test_statefulset_creation_scaling_update_and_deletion_are_reported(control_plane, kube, namespace):
    with watching(control_plane, namespace, "statefulsets") as collector:
        kube.create("statefulsets", namespace, make_statefulset("db", replicas=1))
        kube.patch_status("statefulsets", namespace, "db", {"status": {
            "observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "currentReplicas": 1, "updatedReplicas": 1}})
        kube.patch("statefulsets", namespace, "db", {"spec": {"replicas": 3}})
        kube.patch("statefulsets", namespace, "db", new_image())
        kube.delete("statefulsets", namespace, "db")
        assert settled(kube, namespace, collector, "statefulsets") == [
            "StatefulSet Created: db", "StatefulSet Scaled: db (1 → 3)",
            f"StatefulSet Updated: db: containers[main].image {DEFAULT_IMAGE} → {NEW_IMAGE}", "StatefulSet Deleted: db"]
        assert change(collector, "StatefulSet Scaled: db (1 → 3)").data["changed"] == {
            "replicas": {"old": 1, "new": 3}}
        assert change(collector, f"StatefulSet Updated: db: containers[main].image {DEFAULT_IMAGE} → {NEW_IMAGE}"
                      ).data["changes"] == IMAGE_CHANGE


def test_daemonset_creation_update_and_deletion_are_reported(control_plane, kube, namespace):
    with watching(control_plane, namespace, "daemonsets") as collector:
        kube.create("daemonsets", namespace, make_daemonset("agent"))
        kube.patch_status("daemonsets", namespace, "agent", {"status": {
            "desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "numberMisscheduled": 0}})
        kube.patch("daemonsets", namespace, "agent", new_image())
        kube.delete("daemonsets", namespace, "agent")
        assert settled(kube, namespace, collector, "daemonsets") == [
            "DaemonSet Created: agent", f"DaemonSet Updated: agent: containers[main].image {DEFAULT_IMAGE} → {NEW_IMAGE}",
            "DaemonSet Deleted: agent"]
        updated = change(collector, f"DaemonSet Updated: agent: containers[main].image {DEFAULT_IMAGE} → {NEW_IMAGE}")
        assert updated.data["changes"] == IMAGE_CHANGE
        assert updated.data["numberReady"] == 1
