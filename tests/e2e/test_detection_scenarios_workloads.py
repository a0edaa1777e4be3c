"""Detection scenarios on the real controllers: Deployments, StatefulSets and DaemonSets.

The controllers plane runs kube-controller-manager and kube-scheduler: the deployment
controller writes the status and conditions the rules read, and creates the ReplicaSets
and pods; the tests only play the kubelet (`keep_ready`: bound pods start and become
ready). Helpers: the marker technique (`settled`) in scenarios.py, the kubelet in kubelet.py.
"""
import pytest

from tests.e2e.kubelet import fresh_namespace, keep_ready, pods, run_ready, watching
from tests.e2e.scenarios import change, settled
from tests.envtest.builders import DEFAULT_IMAGE, make_daemonset, make_deployment, make_statefulset
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e

NEW_IMAGE = "registry.example/app:1.1"
IMAGE_CHANGE = [{"path": "containers[main].image", "change": "changed", "old": DEFAULT_IMAGE, "new": NEW_IMAGE}]
WEB_UPDATED = f"Deployment Updated: web: containers[main].image {DEFAULT_IMAGE} → {NEW_IMAGE}"
DB_UPDATED = f"StatefulSet Updated: db: containers[main].image {DEFAULT_IMAGE} → {NEW_IMAGE}"
AGENT_UPDATED = f"DaemonSet Updated: agent: containers[main].image {DEFAULT_IMAGE} → {NEW_IMAGE}"


def new_image(image=NEW_IMAGE):
    return {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}}


def titles_while_ready(kube, ns, collector, *titles, timeout=60.0):
    """Plays the kubelet (every bound pod starts, ready) until `titles` were all emitted."""
    def done():
        keep_ready(kube, ns)
        return all(t in collector.titles() for t in titles)
    wait_for(done, timeout=timeout, interval=0.2, message=f"{titles}; have {collector.titles()}")


# -- deployments --------------------------------------------------------------------------

def test_deployment_creation_scaling_and_deletion_are_reported(controllers_plane, controllers_kube):
    kube = controllers_kube
    with fresh_namespace(kube, "wl-scale") as ns, watching(controllers_plane, ns, "deployments") as collector:
        kube.create("deployments", ns, make_deployment("web", replicas=3))
        kube.patch("deployments", ns, "web", {"spec": {"replicas": 5}})
        kube.delete("deployments", ns, "web")
        assert settled(kube, ns, collector, "deployments") == [
            "Deployment Created: web", "Deployment Scaled: web (3 → 5)", "Deployment Deleted: web"]
        scaled = change(collector, "Deployment Scaled: web (3 → 5)")
        assert (scaled.kind, scaled.reason) == ("Deployment", "Scaled")
        assert scaled.data["changed"] == {"replicas": {"old": 3, "new": 5}}


def test_deployment_image_change_is_an_update_with_old_and_new_images(controllers_plane, controllers_kube):
    kube = controllers_kube
    with fresh_namespace(kube, "wl-image") as ns, watching(controllers_plane, ns, "deployments") as collector:
        kube.create("deployments", ns, make_deployment("web"))
        kube.patch("deployments", ns, "web", new_image())
        assert settled(kube, ns, collector, "deployments") == ["Deployment Created: web", WEB_UPDATED]
        updated = change(collector, WEB_UPDATED)
        assert updated.reason == "Updated"
        assert updated.data["changes"] == IMAGE_CHANGE
        assert (updated.data["generation"], updated.data["previousGeneration"]) == (2, 1)
        assert (updated.data["image"], updated.data["previousImage"]) == (NEW_IMAGE, DEFAULT_IMAGE)
        assert updated.data["images"] == [{"container": "main", "image": NEW_IMAGE}]


def test_deployment_rollout_complete_is_reported_once_per_generation(controllers_plane, controllers_kube):
    kube = controllers_kube
    with fresh_namespace(kube, "wl-complete") as ns, watching(controllers_plane, ns, "deployments") as collector:
        kube.create("deployments", ns, make_deployment("web", replicas=3))
        titles_while_ready(kube, ns, collector, "Deployment Rollout Complete: web")
        kube.patch("deployments", ns, "web", new_image())
        wait_for(lambda: keep_ready(kube, ns) is not None and len(
            [c for _, c in collector.items if c.reason == "RolloutComplete"]) == 2, timeout=60, interval=0.2,
            message=f"the second rollout complete; have {collector.titles()}")
        assert settled(kube, ns, collector, "deployments") == [
            "Deployment Created: web", "Deployment Rollout Complete: web",
            WEB_UPDATED, "Deployment Rollout Complete: web"]
        complete = [c for _, c in collector.items if c.reason == "RolloutComplete"]
        assert [c.data["generation"] for c in complete] == [1, 2]
        assert complete[1].data["updatedReplicas"] == complete[1].data["availableReplicas"] == 3
        assert complete[0].external_id != complete[1].external_id


def test_deployment_rollout_stuck_is_reported_once_on_progress_deadline_exceeded(controllers_plane, controllers_kube):
    kube = controllers_kube
    with fresh_namespace(kube, "wl-stuck") as ns, watching(controllers_plane, ns, "deployments") as collector:
        web = make_deployment("web", replicas=2)
        web["spec"]["progressDeadlineSeconds"] = 2  # its pods never become ready: no kubelet plays them
        kube.create("deployments", ns, web)
        collector.wait_titles("Deployment Rollout Stuck: web", timeout=60)
        assert settled(kube, ns, collector, "deployments") == [
            "Deployment Created: web", "Deployment Rollout Stuck: web"]
        stuck = change(collector, "Deployment Rollout Stuck: web")
        assert stuck.reason == "RolloutStuck"
        assert (stuck.data["reason"], stuck.data["progressing"]) == ("ProgressDeadlineExceeded", "False")


def test_deployment_status_churn_reports_nothing(controllers_plane, controllers_kube):
    kube = controllers_kube
    with fresh_namespace(kube, "wl-churn") as ns:
        kube.create("deployments", ns, make_deployment("web", replicas=2))
        wait_for(lambda: keep_ready(kube, ns) is not None and kube.get("deployments", ns, "web")["status"].get(
            "availableReplicas") == 2, timeout=60, interval=0.2, message="rolled out before we watch")
        with watching(controllers_plane, ns, "deployments") as collector:
            victim = pods(kube, ns, "app=web")[0]
            kube.patch_status("pods", ns, victim["metadata"]["name"], {"status": {"conditions": [
                {"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}]}})
            wait_for(lambda: kube.get("deployments", ns, "web")["status"].get("readyReplicas") == 1, timeout=30,
                     message="the controller counted the pod unready")
            run_ready(kube, victim)  # and it comes back
            wait_for(lambda: kube.get("deployments", ns, "web")["status"].get("readyReplicas") == 2, timeout=30,
                     message="the controller counted it ready again")
            assert settled(kube, ns, collector, "deployments") == []


# -- statefulsets and daemonsets ----------------------------------------------------------

def test_statefulset_creation_scaling_update_and_deletion_are_reported(controllers_plane, controllers_kube):
    kube = controllers_kube
    with fresh_namespace(kube, "wl-sts") as ns, watching(controllers_plane, ns, "statefulsets") as collector:
        kube.create("statefulsets", ns, make_statefulset("db", replicas=1))
        wait_for(lambda: keep_ready(kube, ns) is not None and kube.get("statefulsets", ns, "db")["status"].get(
            "readyReplicas") == 1, timeout=60, interval=0.2, message="db-0 ready")
        kube.patch("statefulsets", ns, "db", {"spec": {"replicas": 3}})
        kube.patch("statefulsets", ns, "db", new_image())
        kube.delete("statefulsets", ns, "db")
        assert settled(kube, ns, collector, "statefulsets") == [
            "StatefulSet Created: db", "StatefulSet Scaled: db (1 → 3)", DB_UPDATED,
            "StatefulSet Deleted: db"]
        assert change(collector, "StatefulSet Scaled: db (1 → 3)").data["changed"] == {
            "replicas": {"old": 1, "new": 3}}
        updated = change(collector, DB_UPDATED)
        assert updated.data["changes"] == IMAGE_CHANGE
        assert updated.data["currentRevision"].startswith("db-")  # the controller's ControllerRevision


def test_daemonset_creation_update_and_deletion_are_reported(controllers_plane, controllers_kube):
    kube = controllers_kube
    with fresh_namespace(kube, "wl-ds") as ns, watching(controllers_plane, ns, "daemonsets") as collector:
        kube.create("daemonsets", ns, make_daemonset("agent"))
        wait_for(lambda: keep_ready(kube, ns) is not None and kube.get("daemonsets", ns, "agent")["status"].get(
            "numberReady") == 2, timeout=60, interval=0.2, message="one ready agent per fake Node")
        kube.patch("daemonsets", ns, "agent", new_image())
        kube.delete("daemonsets", ns, "agent")
        assert settled(kube, ns, collector, "daemonsets") == [
            "DaemonSet Created: agent", AGENT_UPDATED, "DaemonSet Deleted: agent"]
        updated = change(collector, AGENT_UPDATED)
        assert updated.data["changes"] == IMAGE_CHANGE
        assert (updated.data["desiredNumberScheduled"], updated.data["numberReady"]) == (2, 2)
