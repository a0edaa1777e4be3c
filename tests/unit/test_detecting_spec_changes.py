"""What an Updated event says changed (data.changes): person-readable paths, never a secret."""
from __future__ import annotations

import copy
import json

from painchain_connector.detecting import detect, project
from painchain_connector.detecting.specdiff import MAX_PATHS
from tests.unit.test_detecting_deployments import CTX, deployment

PASSWORD = "hunter2-S3cr3t!-do-not-leak"
NEW_PASSWORD = "correct-horse-battery-staple-42"


def _edit(obj, *, generation=2, rv="101", edit=None):
    changed = copy.deepcopy(obj)
    changed["metadata"].update(generation=generation, resourceVersion=rv)
    edit(changed["spec"]["template"]["spec"]["containers"][0], changed)
    return changed


def _updated(old, new):
    changes, _ = detect("deployments", project("deployments", old), project("deployments", new), deleted=False, ctx=CTX)
    updated = [c for c in changes if c.reason == "Updated"]
    assert len(updated) == 1, [c.title for c in changes]
    return updated[0]


def _with_password(obj):
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "DB_PASSWORD", "value": PASSWORD}, {"name": "LOG_LEVEL", "value": "info"}]
    return obj


def test_image_resources_and_env_in_one_update_are_one_event_naming_each_without_values():
    old = _with_password(deployment())

    def edit(c, _):
        c["image"] = "example.com/web:1.1"
        c["resources"] = {"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m"}}
        c["env"][0]["value"] = NEW_PASSWORD

    updated = _updated(old, _edit(old, edit=edit))
    assert updated.data["changes"] == [
        {"path": "containers[web].image", "change": "changed", "old": "example.com/web:1.0", "new": "example.com/web:1.1"},
        {"path": "containers[web].resources.requests.cpu", "change": "added", "new": "250m"},
        {"path": "containers[web].resources.limits.memory", "change": "added", "new": "512Mi"},
        {"path": "containers[web].env.DB_PASSWORD", "change": "changed"},
    ]
    assert updated.title == ("Deployment Updated: web: containers[web].image example.com/web:1.0 → example.com/web:1.1, "
                             "containers[web].resources.requests.cpu added (250m), "
                             "containers[web].resources.limits.memory added (512Mi) and 1 more")
    text = json.dumps([updated.title, updated.data], ensure_ascii=False)
    assert PASSWORD not in text and NEW_PASSWORD not in text


def test_secret_and_configmap_references_are_named_by_reference_and_key_only():
    old = _with_password(deployment())

    def edit(c, _):
        c["env"][0] = {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
        c["env"][1] = {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "level"}}}
        c["envFrom"] = [{"secretRef": {"name": "api-keys"}, "prefix": "API_"}]

    updated = _updated(old, _edit(old, edit=edit))
    assert updated.data["changes"] == [
        {"path": "containers[web].env.DB_PASSWORD", "change": "changed"},  # the old side was a literal
        {"path": "containers[web].env.LOG_LEVEL", "change": "changed"},
        {"path": "containers[web].envFrom", "change": "added", "new": "secret api-keys (prefix API_)"},
    ]
    moved = _edit(_edit(old, edit=edit), generation=3, rv="102",
                  edit=lambda c, _: c["env"][0]["valueFrom"]["secretKeyRef"].update(name="db-v2"))
    assert _updated(_edit(old, edit=edit), moved).data["changes"] == [
        {"path": "containers[web].env.DB_PASSWORD", "change": "changed", "old": "secret db/password",
         "new": "secret db-v2/password"}]
    assert PASSWORD not in json.dumps(updated.data)


def test_command_args_and_exec_probe_commands_are_reported_without_their_text():
    old = deployment()

    def edit(c, _):
        c["args"] = ["--password", PASSWORD]
        c["livenessProbe"] = {"exec": {"command": ["check", PASSWORD]}, "periodSeconds": 10}

    updated = _updated(old, _edit(old, edit=edit))
    assert updated.data["changes"] == [
        {"path": "containers[web].args", "change": "added"},
        {"path": "containers[web].livenessProbe", "change": "added", "new": "exec period=10"},
        {"path": "containers[web].livenessProbe.exec", "change": "added"},
    ]
    assert PASSWORD not in json.dumps([updated.title, updated.data])


def test_pod_level_fields_volumes_and_template_metadata_have_readable_paths():
    old = deployment()

    def edit(c, obj):
        pod = obj["spec"]["template"]["spec"]
        pod.update(serviceAccountName="api", nodeSelector={"disk": "ssd"},
                   tolerations=[{"key": "dedicated", "value": "api", "effect": "NoSchedule"}],
                   volumes=[{"name": "creds", "secret": {"secretName": "db-creds"}}])
        c["volumeMounts"] = [{"name": "creds", "mountPath": "/etc/creds", "readOnly": True}]
        c["readinessProbe"] = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5}
        c["ports"] = [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        obj["spec"]["template"]["metadata"]["labels"]["version"] = "2"

    paths = {e["path"]: e.get("new") for e in _updated(old, _edit(old, edit=edit)).data["changes"]}
    assert paths == {
        "containers[web].ports": "http 8080/TCP",
        "containers[web].readinessProbe": "httpGet /ready port 8080 period=5",
        "containers[web].volumeMounts": "creds:/etc/creds ro",
        "serviceAccountName": "api",
        "nodeSelector.disk": "ssd",
        "tolerations": "dedicated=api:NoSchedule",
        "volumes[creds]": "secret db-creds",
        "template.labels.version": "2",
    }


def test_an_annotation_change_of_the_deployment_object_itself_reports_nothing():
    old = deployment()
    # the apiserver bumps a Deployment's generation when its own annotations change
    new = deployment(generation=2, observed=1, rv="101")
    new["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": json.dumps({"x": PASSWORD}),
                                      "team": "payments"}
    caught_up = copy.deepcopy(new)
    caught_up["metadata"]["resourceVersion"] = "102"
    caught_up["status"]["observedGeneration"] = 2  # the controller's answer: no rollout to report
    state = project("deployments", old)
    for obj in (new, caught_up):
        changes, state = detect("deployments", state, project("deployments", obj), deleted=False, ctx=CTX)
        assert changes == []


def test_the_list_of_changes_is_bounded_with_a_marker_and_the_title_counts_the_rest():
    old = deployment(env=0)
    new = _edit(old, edit=lambda c, _: c.update(env=[{"name": f"VAR_{i:03}", "value": "x"} for i in range(300)]))
    updated = _updated(old, new)
    data = updated.data
    assert len(data["changes"]) == 20 and data["changesTruncated"] is True
    # the store keeps MAX_PATHS entries (the image and 199 variables) and a marker; what it
    # cut (the template labels, the strategy) is not reported as removed
    assert data["changesTotal"] == MAX_PATHS
    assert data["changes"][-1]["path"] == "containers[web].env.VAR_019"
    assert updated.title.endswith(f"and {data['changesTotal'] - 3} more")
    assert len(json.dumps(data)) < 10_000


def test_a_state_kept_by_an_older_version_reports_spec_changed_without_guessing():
    old = project("deployments", deployment())._replace(cold=None)
    new = project("deployments", deployment(generation=2, image="example.com/web:2", rv="101"))
    changes, _ = detect("deployments", old, new, deleted=False, ctx=CTX)
    changes = [c for c in changes if c.reason == "Updated"]
    assert [c.title for c in changes] == ["Deployment Updated: web"]
    assert "changes" not in changes[0].data and changes[0].data["summary"].endswith("spec changed")


def test_scale_with_another_change_lists_replicas_in_the_update_too():
    changes, _ = detect("deployments", project("deployments", deployment()),
                        project("deployments", deployment(generation=2, replicas=5, image="example.com/web:2", rv="101")),
                        deleted=False, ctx=CTX)
    assert [c.reason for c in changes][:2] == ["Scaled", "Updated"]
    assert [e["path"] for e in changes[1].data["changes"]] == ["replicas", "containers[web].image"]
