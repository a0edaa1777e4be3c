"""deploy/ is a kustomize base with overlays: each overlay renders with `kubectl kustomize`
and every object it renders is accepted by the apiserver (server-side dry run)."""
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.envtest.kube import path_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("single", "sharded", "namespaced-rbac")
PLURAL = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
          "ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings",
          "Deployment": "deployments", "StatefulSet": "statefulsets", "Service": "services"}
# + the owner index (correlating.py): ReplicaSets and Jobs, read to name a pod's workload
WATCHED = {(r, v) for r in ("pods", "services", "events", "deployments", "statefulsets", "daemonsets",
                            "replicasets", "jobs")
           for v in ("get", "list", "watch")}


def render(overlay: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy" / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def granted(role: dict) -> set:
    return {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}


def dry_run(kube, doc: dict, namespace: str):
    """POST ?dryRun=All, moved into the test's namespace (so that the namespace exists)."""
    doc = yaml.safe_load(yaml.safe_dump(doc))
    if doc["kind"] == "PodDisruptionBudget":
        # policy/v1 is Kubernetes 1.21+; the test apiserver is 1.20, whose v1beta1 has the same fields.
        doc["apiVersion"] = "policy/v1beta1"
        path = f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets"
    else:
        path = None
    if doc["metadata"].get("namespace"):
        doc["metadata"]["namespace"] = namespace
    for subject in doc.get("subjects", []):
        subject["namespace"] = namespace
    scoped = namespace if doc["metadata"].get("namespace") else None
    return kube.request("POST", path or path_for(PLURAL[doc["kind"]], scoped), body=doc, params={"dryRun": "All"})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_every_object_is_accepted_by_the_apiserver(kube, namespace, overlay):
    docs = render(overlay)
    for doc in docs:
        answer = dry_run(kube, doc, namespace)
        assert answer.status_code in (200, 201), (overlay, doc["kind"], answer.text)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ServiceAccount", "Service"} <= kinds
    roles = [d for d in docs if d["kind"] in ("ClusterRole", "Role") and "leases" not in str(d["rules"])]
    assert len(roles) == 1 and granted(roles[0]) == WATCHED  # least privilege: exactly these
    assert roles[0]["kind"] == ("Role" if overlay == "namespaced-rbac" else "ClusterRole")


def test_the_sharded_overlay_runs_a_statefulset_with_a_volume_per_replica_and_lease_rights():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render("sharded")}
    assert not any(kind == "Deployment" for kind, _ in docs)
    sts = docs[("StatefulSet", "painchain-kubernetes-connector")]
    spec = sts["spec"]
    assert spec["serviceName"] in {name for kind, name in docs if kind == "Service"}
    assert docs[("Service", spec["serviceName"])]["spec"]["clusterIP"] == "None"
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["SHARD_LEASE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "state")["mountPath"]
    assert env["STATE_DIR"]["value"] == mount
    # SIGTERM hands over (SHARD_HANDOVER_SECONDS) then drains (DRAIN_TIMEOUT, 10 s by default) within the grace.
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= float(env["SHARD_HANDOVER_SECONDS"]["value"]) + 10
    role = docs[("Role", "painchain-connector-leases")]
    assert granted(role) == {("leases", v) for v in ("get", "list", "watch", "create", "update", "delete")}
    assert role["rules"][0]["apiGroups"] == ["coordination.k8s.io"]
    assert ("PodDisruptionBudget", "painchain-kubernetes-connector") in docs
