"""Correlation on the real controllers: pod failures name the workload and the rollout that
caused them, workload changes name who made them (tests play only the kubelet)."""
import subprocess

import pytest

from tests.e2e.helpers import Collector, make_integration, only, start_pool, wait_watching
from tests.e2e.kubelet import bound, crash_loop, fresh_namespace, keep_ready, owner_name, run_ready, watching
from tests.envtest.builders import DEFAULT_IMAGE, make_daemonset, make_deployment, make_pod, make_statefulset
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e

V2 = "registry.example/app:2.0"


def kubectl(cp, tmp_path, *args) -> str:
    config = cp.write_kubeconfig(tmp_path / "kubectl.kubeconfig", {"admin": cp.admin_token})
    done = subprocess.run(["kubectl", "--kubeconfig", config, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def found(collector, predicate, message):
    return wait_for(lambda: [c for _, c in collector.items if predicate(c)], timeout=45, interval=0.1,
                    message=message + f"; have {collector.titles()}")


def test_crash_loop_after_a_rollout_names_the_deployment_revision_and_its_updated_event(
        controllers_plane, controllers_kube, tmp_path):
    kube, cp = controllers_kube, controllers_plane
    with fresh_namespace(kube, "corr-rollout") as ns, watching(cp, ns, "deployments", "pods") as collector:
        web = make_deployment("web", replicas=2)
        web["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        kube.create("deployments", ns, web)
        for pod in bound(kube, ns, 2, "app=web"):
            run_ready(kube, pod)
        found(collector, lambda c: c.reason == "RolloutComplete", "rollout of revision 1 complete")
        first_rs = owner_name(bound(kube, ns, 2, "app=web")[0])

        kube.patch("deployments", ns, "web", {"spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": V2}]}}}})
        [updated] = found(collector, lambda c: c.reason == "Updated", "Updated")
        assert (updated.data["revision"], updated.data["image"]) == ("2", V2)
        [new_pod] = bound(kube, ns, 1, "app=web", where=lambda p: owner_name(p) != first_rs)
        crash_loop(kube, new_pod)
        title = f"Pod CrashLoopBackOff: {new_pod['metadata']['name']} after rollout of Deployment web to revision 2"
        [crash] = found(collector, lambda c: c.title == title, title)
        assert crash.data["owner"] == {"kind": "Deployment", "name": "web"}
        assert crash.data["revision"] == "2"
        rollout = crash.data["rollout"]
        assert (rollout["kind"], rollout["name"], rollout["revision"]) == ("Deployment", "web", "2")
        assert rollout["externalId"] == updated.external_id
        assert rollout["images"] == [{"container": "main", "image": V2}]

        kubectl(cp, tmp_path, "-n", ns, "rollout", "undo", "deployment/web")
        [rollback] = found(collector, lambda c: c.reason == "Updated" and c.data["generation"] == 3, "rollback")
        assert (rollback.data["revision"], rollback.data["image"]) == ("3", DEFAULT_IMAGE)
        assert rollback.data["changedBy"] == "kubectl"
        wait_for(lambda: kube.get("replicasets", ns, first_rs)["metadata"]["annotations"].get(
            "deployment.kubernetes.io/revision") == "3", timeout=30, message="the controller's revision 3")

        kubectl(cp, tmp_path, "-n", ns, "patch", "deployment/web", "--type=merge", "-p", '{"spec":{"replicas":4}}')
        [scaled] = found(collector, lambda c: c.reason == "Scaled", "Scaled")
        assert (scaled.data["changedBy"], scaled.data["fieldManager"]) == ("kubectl", "kubectl-patch")


def test_kubectl_scale_on_a_pre_1_22_apiserver_names_no_author_rather_than_a_wrong_one(
        controllers_plane, controllers_kube, tmp_path):
    """1.20's scale subresource updates no managedFields entry: the creator still owns
    spec.replicas, and naming it would blame the wrong tool."""
    kube, cp = controllers_kube, controllers_plane
    with fresh_namespace(kube, "corr-scale") as ns, watching(cp, ns, "deployments") as collector:
        kube.create("deployments", ns, make_deployment("web", replicas=1))
        found(collector, lambda c: c.reason == "Created", "Created")
        kubectl(cp, tmp_path, "-n", ns, "scale", "deployment/web", "--replicas=3")
        [scaled] = found(collector, lambda c: c.reason == "Scaled", "Scaled")
        assert scaled.data["changed"] == {"replicas": {"old": 1, "new": 3}}
        assert "changedBy" not in scaled.data


def test_pods_of_a_statefulset_a_daemonset_a_bare_replicaset_and_a_cronjobs_job_name_their_owners(
        controllers_plane, controllers_kube):
    kube = controllers_kube
    with fresh_namespace(kube, "corr-owners") as ns, watching(controllers_plane, ns, "pods") as collector:
        kube.create("statefulsets", ns, make_statefulset("db"))
        kube.create("daemonsets", ns, make_daemonset("agent"))
        bare = make_deployment("cache")
        bare["kind"] = "ReplicaSet"
        kube.create("replicasets", ns, bare)
        cron = kube.create("cronjobs", ns, {"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "report"},
                                            "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": {
                                                "spec": {"restartPolicy": "Never", "containers": [
                                                    {"name": "main", "image": DEFAULT_IMAGE}]}}}}}})
        # What `kubectl create job --from=cronjob/report` writes: the CronJob as controller.
        kube.create("jobs", ns, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
            "name": "report-manual", "ownerReferences": [{"apiVersion": "batch/v1beta1", "kind": "CronJob",
                                                          "name": "report", "uid": cron["metadata"]["uid"],
                                                          "controller": True}]},
            "spec": {"template": cron["spec"]["jobTemplate"]["spec"]["template"]}})
        wanted = {("StatefulSet", "db"), ("DaemonSet", "agent"), ("ReplicaSet", "cache"), ("CronJob", "report")}

        def owners():
            keep_ready(kube, ns)
            return {(c.data["owner"]["kind"], c.data["owner"]["name"]) for _, c in collector.items
                    if c.reason == "Created" and "owner" in c.data}
        wait_for(lambda: owners() >= wanted, timeout=45, interval=0.2, message=f"owners {wanted}")
        stateful = [c for _, c in collector.items if c.data.get("owner", {}).get("kind") == "StatefulSet"]
        assert stateful[0].data["controllerRevisionHash"].startswith("db-")


def test_without_permission_to_list_replicasets_the_owner_comes_from_the_naming_rule_and_one_line_says_why(
        control_plane, kube, namespace, restricted_token, logs):
    token = restricted_token(namespaces=[namespace], resources=["pods"])
    collector = Collector()
    integration = make_integration(server=control_plane.server, token=token, ca_b64=control_plane.ca_b64,
                                   namespaces=[namespace], resources=only("pods"))
    pool, _ = start_pool([integration], collector=collector)
    try:
        wait_watching(pool)
        pod = make_pod("web-5d8c7f6b9-x2kq", labels={"app": "web", "pod-template-hash": "5d8c7f6b9"})
        pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8c7f6b9",
                                               "uid": "00000000-0000-0000-0000-000000000001", "controller": True}]
        kube.create("pods", namespace, pod)
        run_ready(kube, kube.get("pods", namespace, "web-5d8c7f6b9-x2kq"))
        [created] = found(collector, lambda c: c.reason == "Created", "Pod Created")
        assert created.data["owner"] == {"kind": "Deployment", "name": "web"}
        assert "revision" not in created.data
        retries = pool.metrics.watch_restarts.labels("replicasets", "forbidden")
        wait_for(lambda: retries._value.get() >= 3, timeout=20, message="the index watch retried, forbidden")
    finally:
        pool.stop_all()
    said = [r for r in logs if "no permission to list replicasets" in r["message"] and r["level"].name == "WARNING"]
    assert len(said) == 1 and "get/list/watch on replicasets" in said[0]["message"]
    assert not [r for r in logs if r["level"].name == "ERROR"]
