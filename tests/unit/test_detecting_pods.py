"""Pod detection: raw pods as the apiserver returns them → project → detect."""
from __future__ import annotations

import copy
import gc
import json
import tracemalloc
import uuid
from datetime import UTC, datetime

from painchain_connector.detecting import common, detect, project
from painchain_connector.model import DetectContext

OBSERVED = datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC)
CTX = DetectContext(cluster="prod", observed_at=OBSERVED)
UID = "6f1c2d3e-1111-2222-3333-444455556666"


def running(name="app", *, restarts=0, ready=True, last=None):
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "image": f"example.com/{name}:1.0",
        "imageID": "sha256:" + "ab" * 32,
        "containerID": "containerd://" + "c0" * 32,
        "started": ready,
        "state": {"running": {"startedAt": "2024-05-01T10:00:03Z"}},
        "lastState": {"terminated": last} if last else {},
    }


def waiting(name="app", reason="CrashLoopBackOff", *, restarts=0, last=None, message="back-off 10s"):
    status = running(name, restarts=restarts, ready=False, last=last)
    status["state"] = {"waiting": {"reason": reason, "message": message}}
    return status


def terminated_state(code, *, reason="Error", cid="a1" * 32, finished="2024-05-01T11:00:00Z", signal=None):
    state = {
        "exitCode": code,
        "reason": reason,
        "startedAt": "2024-05-01T10:59:00Z",
        "finishedAt": finished,
        "containerID": "containerd://" + cid,
    }
    if signal is not None:
        state["signal"] = signal
    return state


def terminated(name="app", code=1, *, restarts=0, **kwargs):
    status = running(name, restarts=restarts, ready=False)
    status["state"] = {"terminated": terminated_state(code, **kwargs)}
    return status


def pod(*statuses, phase="Running", rv="100", ip="10.1.0.7", labels=None, deleting=None, reason=None, message=None):
    statuses = list(statuses) or [running()]
    conditions = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": "2024-05-01T10:00:05Z"}
        for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    obj = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": "api-7d9f",
            "namespace": "shop",
            "uid": UID,
            "resourceVersion": rv,
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": labels if labels is not None else {"app": "api", "pod-template-hash": "7d9f"},
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": s["name"], "image": f"example.com/{s['name']}:1.0"} for s in statuses],
        },
        "status": {"phase": phase, "podIP": ip, "conditions": conditions, "containerStatuses": statuses},
    }
    if deleting:
        obj["metadata"]["deletionTimestamp"] = deleting
    if reason:
        obj["status"]["reason"] = reason
    if message:
        obj["status"]["message"] = message
    return obj


def step(old_obj, new_obj, *, deleted=False, old_state=None):
    """detect() between two raw pods; `old_obj` None means new to us."""
    old = old_state if old_state is not None else (project("pods", old_obj) if old_obj is not None else None)
    new = project("pods", new_obj) if new_obj is not None else None
    return detect("pods", old, new, deleted=deleted, ctx=CTX)


def test_pending_pod_new_to_us_reports_nothing_then_created_when_it_runs():
    pending = pod(waiting(reason="ContainerCreating"), phase="Pending")
    changes, state = step(None, pending)
    assert changes == []
    changes, _ = detect("pods", state, project("pods", pod(running(), rv="101")), deleted=False, ctx=CTX)
    assert [c.title for c in changes] == ["Pod Created: api-7d9f"]
    assert changes[0].reason == "Created"
    assert changes[0].timestamp == datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)  # creationTimestamp
    assert changes[0].data["changed"] == {"phase": {"old": "Pending", "new": "Running"}}


def test_new_running_pod_reports_created_with_pod_data():
    changes, state = step(None, pod(running("app"), running("sidecar")))
    assert [(c.title, c.kind, c.namespace) for c in changes] == [("Pod Created: api-7d9f", "Pod", "shop")]
    data = changes[0].data
    assert data["pod"] == "api-7d9f" and data["namespace"] == "shop" and data["phase"] == "Running"
    assert data["node"] == "node-1"
    assert data["labels"] == {"app": "api", "pod-template-hash": "7d9f"}
    assert data["containers"][1] == {
        "name": "sidecar", "image": "example.com/sidecar:1.0", "ready": True, "restartCount": 0, "state": "running"
    }
    assert {"type": "Ready", "status": "True"} in data["conditions"]  # no null fields
    assert data["summary"] == "Pod api-7d9f created: Running on node-1"
    assert data["image"] == "example.com/app:1.0"
    assert data["containersSummary"] == "app: running, 0 restarts, ready; sidecar: running, 0 restarts, ready"
    assert state.uid == UID and state.name == "api-7d9f" and state.namespace == "shop" and state.resource_version == "100"
    json.dumps(data)


def test_routine_updates_report_nothing():
    base = pod(running(ready=False), ip="")
    ready_flip = pod(running(ready=True), rv="101")
    ip_assigned = pod(running(ready=True), rv="102", ip="10.1.0.99")
    later_conditions = copy.deepcopy(ip_assigned)
    later_conditions["metadata"]["resourceVersion"] = "103"
    for condition in later_conditions["status"]["conditions"]:
        condition["lastTransitionTime"] = "2024-05-01T10:30:00Z"
        condition["lastProbeTime"] = "2024-05-01T10:30:00Z"
    for old, new in ((base, ready_flip), (ready_flip, ip_assigned), (ip_assigned, later_conditions), (later_conditions, later_conditions)):
        assert step(old, new)[0] == []


def test_crashloop_emitted_once_on_transition_not_while_it_lasts():
    last = terminated_state(1)
    changes, _ = step(pod(running(restarts=1)), pod(waiting(restarts=1, last=last), rv="101"))
    crash = [c for c in changes if c.reason == "CrashLoopBackOff"]
    assert [c.title for c in crash] == ["Pod CrashLoopBackOff: api-7d9f"]
    assert crash[0].data["changed"] == {"waitingReason": {"new": "CrashLoopBackOff"}}
    assert crash[0].data["container"] == "app"
    assert crash[0].timestamp == datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC)  # the crash: lastState finishedAt
    still = step(pod(waiting(restarts=1, last=last), rv="101"), pod(waiting(restarts=1, last=last, message="back-off 20s"), rv="102"))[0]
    assert [c for c in still if c.reason == "CrashLoopBackOff"] == []


def test_crash_with_restart_and_backoff_in_one_update_is_one_event_carrying_every_fact():
    first = terminated_state(1, cid="a1" * 32, finished="2024-05-01T11:00:00Z")
    second = terminated_state(1, cid="b2" * 32, finished="2024-05-01T11:05:00Z")
    running_again = pod(running(restarts=1, last=first))
    crashed = pod(waiting(restarts=2, last=second, message="back-off 20s restarting failed container"), rv="101")
    changes, _ = step(running_again, crashed)
    assert [(c.title, c.reason) for c in changes] == [("Pod CrashLoopBackOff: api-7d9f", "CrashLoopBackOff")]
    data = changes[0].data
    assert data["summary"] == ("Container app of pod api-7d9f exited with code 1 (Error), restarted (1 → 2 restarts)"
                               " and is waiting in CrashLoopBackOff: back-off 20s restarting failed container")
    assert data["facts"] == ["CrashLoopBackOff", "Terminated", "Restarted"]
    assert (data["reason"], data["exitCode"], data["terminationReason"], data["restartCount"],
            data["previousRestartCount"]) == ("CrashLoopBackOff", 1, "Error", 2, 1)
    assert (data["container"], data["image"], data["node"]) == ("app", "example.com/app:1.0", "node-1")
    assert data["changed"] == {"restartCount": {"old": 1, "new": 2}, "waitingReason": {"new": "CrashLoopBackOff"}}
    assert changes[0].timestamp == datetime(2024, 5, 1, 11, 5, 0, tzinfo=UTC)
    assert changes[0].external_id == f"k8s:prod:Pod:shop/api-7d9f:{UID}:CrashLoopBackOff:app:2"


def test_two_containers_failing_in_one_update_are_two_events():
    last = terminated_state(1)
    changes, _ = step(pod(running("app"), running("sidecar")),
                      pod(waiting("app", last=last, restarts=1), waiting("sidecar", last=last, restarts=1), rv="101"))
    assert [(c.reason, c.data["container"]) for c in changes] == [("CrashLoopBackOff", "app"), ("CrashLoopBackOff", "sidecar")]


def test_crashloop_again_after_the_next_crash_gets_a_new_external_id():
    first = step(pod(running(restarts=1)), pod(waiting(restarts=1), rv="101"))[0]
    again = step(pod(running(restarts=2), rv="102"), pod(waiting(restarts=2), rv="103"))[0]
    assert [c.reason for c in first] == [c.reason for c in again] == ["CrashLoopBackOff"]
    assert first[0].external_id != again[0].external_id


def test_image_pull_problem_reported_while_pending_and_once_despite_kubelet_flapping():
    created = pod(waiting(reason="ContainerCreating"), phase="Pending")
    err = pod(waiting(reason="ErrImagePull"), phase="Pending", rv="101")
    backoff = pod(waiting(reason="ImagePullBackOff"), phase="Pending", rv="102")
    err_again = pod(waiting(reason="ErrImagePull"), phase="Pending", rv="103")
    changes = step(created, err)[0]
    assert [c.title for c in changes] == ["Pod ErrImagePull: api-7d9f"]
    assert changes[0].data["message"] == "back-off 10s"
    assert step(err, backoff)[0] == [] and step(backoff, err_again)[0] == []
    assert [c.title for c in step(created, backoff)[0]] == ["Pod ImagePullBackOff: api-7d9f"]


def test_nonzero_termination_reported_once_with_exit_code_reason_and_signal():
    oom = terminated_state(137, reason="OOMKilled", signal=9, finished="2024-05-01T11:00:00Z")
    just_died = pod(terminated(code=137, reason="OOMKilled", signal=9, finished="2024-05-01T11:00:00Z"), rv="101")
    changes = step(pod(running()), just_died)[0]
    assert [c.title for c in changes] == ["Pod Container Terminated: api-7d9f (app: exit 137, OOMKilled)"]
    assert changes[0].reason == "Terminated"
    assert changes[0].timestamp == datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC)  # finishedAt
    data = changes[0].data
    assert (data["exitCode"], data["reason"], data["signal"], data["container"]) == (137, "OOMKilled", 9, "app")
    assert data["summary"] == "Container app of pod api-7d9f exited with code 137 (OOMKilled) on signal 9"
    # The same termination moves to lastState while the container backs off and restarts.
    backing_off = pod(waiting(last=oom), rv="102")
    restarted = pod(running(restarts=1, last=oom), rv="103")
    assert [c.reason for c in step(just_died, backing_off)[0]] == ["CrashLoopBackOff"]
    assert [c.reason for c in step(backing_off, restarted)[0]] == ["Restarted"]
    assert "signal" not in step(pod(running()), pod(terminated(code=1), rv="101"))[0][0].data  # no null fields


def test_zero_exit_termination_is_not_reported():
    assert step(pod(running()), pod(terminated(code=0, reason="Completed"), rv="101"))[0] == []


def test_each_new_termination_of_one_container_is_its_own_change():
    first = terminated_state(1, cid="a1" * 32, finished="2024-05-01T11:00:00Z")
    second = terminated_state(1, cid="b2" * 32, finished="2024-05-01T11:05:00Z")
    seen_first = pod(running(restarts=1, last=first), rv="101")
    changes = step(seen_first, pod(running(restarts=2, last=second), rv="102"))[0]
    terminations = [c for c in changes if c.reason == "Terminated"]
    assert len(terminations) == 1 and terminations[0].data["finishedAt"] == "2024-05-01T11:05:00Z"
    assert terminations[0].external_id != step(pod(running()), seen_first)[0][0].external_id


def test_restart_count_increase_reports_restarted_with_old_and_new_counts():
    changes = step(pod(running(restarts=2)), pod(running(restarts=3), rv="101"))[0]
    assert [c.title for c in changes] == ["Pod Restarted: api-7d9f (restarts 2 → 3)"]
    assert changes[0].data["changed"] == {"restartCount": {"old": 2, "new": 3}}
    assert changes[0].external_id.endswith(":Restarted:app:3")


def test_eviction_reports_evicted_with_reason_and_message_once():
    message = "The node was low on resource: memory."
    evicted = pod(terminated(code=0, reason="Completed"), phase="Failed", reason="Evicted", message=message, rv="101")
    changes = step(pod(running()), evicted)[0]
    assert [(c.title, c.reason) for c in changes] == [("Pod Evicted: api-7d9f", "Evicted")]
    assert changes[0].data["message"] == message and changes[0].data["changed"]["phase"] == {"old": "Running", "new": "Failed"}
    assert step(evicted, evicted)[0] == []


def test_failed_phase_without_eviction_reports_failed():
    changes = step(pod(running()), pod(terminated(code=0, reason="Completed"), phase="Failed", rv="101"))[0]
    assert [c.title for c in changes] == ["Pod Failed: api-7d9f"]


def test_deleted_pod_reports_deleted_at_its_deletion_timestamp():
    final = pod(running(), deleting="2024-05-01T12:00:30Z", rv="200")
    changes, state = step(pod(running()), final, deleted=True)
    assert [c.title for c in changes] == ["Pod Deleted: api-7d9f"] and state is None
    assert changes[0].timestamp == datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)


def test_pod_vanished_between_lists_reports_deleted_from_old_state_at_observed_time():
    changes, state = step(pod(running()), None, deleted=True)
    assert [c.title for c in changes] == ["Pod Deleted: api-7d9f"] and state is None
    assert changes[0].timestamp == OBSERVED


def test_deleting_a_pod_never_seen_beyond_pending_reports_nothing():
    assert step(pod(waiting(reason="ContainerCreating"), phase="Pending"), None, deleted=True) == ([], None)


def test_containers_killed_by_a_pod_deletion_are_not_reported_as_terminations():
    terminating = pod(running(), deleting="2024-05-01T12:00:30Z", rv="101")
    killed = pod(terminated(code=143, reason="Error"), phase="Failed", deleting="2024-05-01T12:00:30Z", rv="102")
    assert step(pod(running()), terminating)[0] == []
    assert step(terminating, killed)[0] == []


def test_external_ids_equal_via_watch_and_relist_and_unique_across_changes():
    before = pod(running(restarts=1))
    watch = step(before, pod(waiting(restarts=1, last=terminated_state(1)), rv="101"))[0]
    later = pod(waiting(restarts=1, last=terminated_state(1), message="back-off 40s"), rv="157", ip="10.1.0.8")
    relist = step(before, later)[0]
    assert sorted(c.external_id for c in watch) == sorted(c.external_id for c in relist)
    assert len(watch) == 1  # CrashLoopBackOff, the termination inside it
    ids = [c.external_id for c in watch]
    ids += [c.external_id for c in step(None, before)[0]]  # Created
    ids += [c.external_id for c in step(before, pod(running(restarts=2), rv="300"))[0]]  # Restarted
    ids += [c.external_id for c in step(before, None, deleted=True)[0]]  # Deleted
    assert len(ids) == 4 and len(set(ids)) == 4
    assert all(i.startswith(f"k8s:prod:Pod:shop/api-7d9f:{UID}:") and len(i) < 255 for i in ids)


def test_pod_with_500_labels_and_1mb_messages_stays_under_100kb():
    huge = "x" * 1_000_000
    statuses = [waiting(f"c{i}", "CrashLoopBackOff", message=huge) for i in range(30)]
    labels = {f"label-{i}": "v" * 63 for i in range(500)}
    big = pod(*statuses, phase="Failed", reason="Evicted", message=huge, labels=labels)
    changes = step(pod(*[running(f"c{i}") for i in range(30)], labels=labels), big)[0]
    assert {c.reason for c in changes} == {"Evicted", "CrashLoopBackOff"}
    for change in changes:
        size = len(json.dumps(change.data).encode())
        assert size < 100_000, (change.title, size)
    evicted = next(c for c in changes if c.reason == "Evicted").data
    assert evicted["message"].endswith(common.TRUNCATED) and len(evicted["message"]) < 5000
    assert common.TRUNCATED_LABELS_KEY in evicted["labels"] and len(evicted["labels"]) == 65
    assert evicted["containersTruncated"] is True and len(evicted["containers"]) == 20


def _replica_pod(i: int) -> dict:
    """A typical Deployment replica: 2 containers, 5 labels, managedFields, 5 conditions."""
    obj = pod(running("app"), running("sidecar"), rv=str(1000 + i), ip=f"10.1.{i // 250}.{i % 250}")
    meta = obj["metadata"]
    meta["uid"] = str(uuid.UUID(int=i))
    meta["name"] = f"web{i // 100}-5d8f7c9b6-{i:05d}"
    meta["labels"] = {"app": f"web{i // 100}", "pod-template-hash": "5d8f7c9b6", "tier": "frontend", "team": "shop", "version": "v1"}
    meta["managedFields"] = [{"manager": "kubelet", "operation": "Update", "time": "2024-05-01T10:00:05Z", "subresource": "status"}]
    for status in obj["status"]["containerStatuses"]:
        status["containerID"] = "containerd://" + uuid.UUID(int=i).hex * 2
    return obj


def test_pod_compact_takes_under_1kb_each_measured_by_tracemalloc():
    raws = [json.dumps(_replica_pod(i)) for i in range(1000)]
    common.share_items.clear()
    common.share_labels.clear()
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        kept = [project("pods", json.loads(raw)) for raw in raws]  # the raw dicts are freed at once
        gc.collect()
        per_pod = (tracemalloc.get_traced_memory()[0] - start) / len(kept)
    finally:
        tracemalloc.stop()
    assert len({c.uid for c in kept}) == 1000
    assert per_pod < 1024, per_pod


# -- timestamps: the object's own time, unless it is older than our sighting of the previous version

def seen(obj, at: str):
    return project("pods", obj, datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())


def test_crash_loop_found_by_a_relist_is_stamped_when_the_container_died_not_at_the_relist():
    before = seen(pod(running(restarts=1)), "2024-05-01T10:30:00Z")
    crashed = pod(waiting(restarts=1, last=terminated_state(1, finished="2024-05-01T11:00:00Z")), rv="150")
    changes, _ = detect("pods", before, seen(crashed, "2024-05-01T11:40:00Z"), deleted=False, ctx=CTX)
    assert [(c.reason, c.timestamp) for c in changes] == [("CrashLoopBackOff", datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC))]


def test_restart_whose_last_termination_we_already_saw_is_stamped_at_its_observation():
    old_crash = terminated_state(1, finished="2024-05-01T11:00:00Z")
    before = seen(pod(running(restarts=1, last=old_crash)), "2024-05-01T11:10:00Z")
    again = seen(pod(running(restarts=2, last=old_crash), rv="101"), "2024-05-01T11:20:00.250000Z")
    changes, _ = detect("pods", before, again, deleted=False, ctx=CTX)
    assert [(c.reason, c.timestamp) for c in changes] == [
        ("Restarted", datetime(2024, 5, 1, 11, 20, 0, 250000, tzinfo=UTC))]  # not the stale 11:00, not CTX


def test_eviction_is_stamped_when_the_pod_stopped_being_ready():
    evicted = pod(terminated(code=0, reason="Completed"), phase="Failed", reason="Evicted", rv="101")
    for condition in evicted["status"]["conditions"]:
        condition["status"], condition["lastTransitionTime"] = "False", "2024-05-01T11:30:00Z"
    changes, _ = detect("pods", seen(pod(running()), "2024-05-01T11:00:00Z"), seen(evicted, "2024-05-01T12:00:00Z"),
                        deleted=False, ctx=CTX)
    assert [(c.reason, c.timestamp) for c in changes] == [("Evicted", datetime(2024, 5, 1, 11, 30, 0, tzinfo=UTC))]


def test_image_pull_failure_is_stamped_at_its_observation_not_at_the_pods_start():
    pulling = pod(waiting(reason="ContainerCreating"), phase="Pending")
    failed = pod(waiting(reason="ErrImagePull"), phase="Pending", rv="101")
    for obj in (pulling, failed):
        obj["status"]["startTime"] = "2024-05-01T11:00:00Z"
        for condition in obj["status"]["conditions"]:
            condition["status"], condition["lastTransitionTime"] = "False", "2024-05-01T11:00:00Z"
    changes, _ = detect("pods", seen(pulling, "2024-05-01T10:59:59Z"), seen(failed, "2024-05-01T11:00:04.5Z"),
                        deleted=False, ctx=CTX)
    assert [(c.reason, c.timestamp) for c in changes] == [
        ("ErrImagePull", datetime(2024, 5, 1, 11, 0, 4, 500000, tzinfo=UTC))]


def test_pod_refused_at_admission_is_stamped_at_its_start_time():
    refused = pod(waiting(reason="ContainerCreating"), phase="Failed", reason="OutOfcpu", rv="101")
    refused["status"]["startTime"] = "2024-05-01T11:00:00Z"
    changes, _ = detect("pods", seen(pod(waiting(reason="ContainerCreating"), phase="Pending"), "2024-05-01T10:59:59Z"),
                        seen(refused, "2024-05-01T11:00:30Z"), deleted=False, ctx=CTX)
    assert [(c.reason, c.timestamp) for c in changes if c.reason != "Created"] == [
        ("Failed", datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC))]
