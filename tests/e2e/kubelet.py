"""The tests' kubelet on the controllers plane: the real controllers create the pods and the
real scheduler binds them to fake Nodes; these helpers write the pod status a kubelet
would (running and ready, crash-looping), and wait for the pods the controllers make.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

from tests.e2e.helpers import Collector, make_integration, only, start_pool, wait_watching
from tests.envtest.fixtures import wait_for


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def fresh_namespace(kube, prefix: str):
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    kube.create("namespaces", None, {"metadata": {"name": name}})
    try:
        yield name
    finally:  # the real namespace controller removes what is left
        kube.delete("namespaces", None, name, missing_ok=True)


@contextmanager
def watching(cp, namespace: str, *resources: str, timing=None):
    """A WatchPool watching `resources` in `namespace` of `cp`; yields its Collector."""
    collector = Collector()
    integration = make_integration(server=cp.server, token=cp.admin_token, ca_b64=cp.ca_b64,
                                   namespaces=[namespace], resources=only(*resources))
    pool, _ = start_pool([integration], collector=collector, timing=timing)
    try:
        wait_watching(pool)
        yield collector
    finally:
        pool.stop_all()


def pods(kube, namespace: str, selector: str | None = None) -> list[dict]:
    params = {"labelSelector": selector} if selector else {}
    return [p for p in kube.list("pods", namespace, **params)["items"] if not p["metadata"].get("deletionTimestamp")]


def owner_name(pod: dict) -> str:
    return (pod["metadata"].get("ownerReferences") or [{}])[0].get("name", "")


def bound(kube, namespace: str, count: int, selector: str | None = None, *, where=lambda p: True,
          timeout: float = 30.0) -> list[dict]:
    """Waits until `count` pods (matching `where`) exist and the scheduler bound each one."""
    def ready():
        found = [p for p in pods(kube, namespace, selector) if where(p)]
        return found if len(found) >= count and all(p["spec"].get("nodeName") for p in found) else None
    return wait_for(ready, timeout=timeout, interval=0.2, message=f"{count} bound pods in {namespace} ({selector})")


def _conditions(ready: bool, stamp: str) -> list[dict]:
    value = "True" if ready else "False"
    return [{"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": stamp}
            for t, s in (("Initialized", "True"), ("Ready", value), ("ContainersReady", value),
                         ("PodScheduled", "True"))]


def run_ready(kube, pod: dict) -> None:
    """Status of a pod whose containers all run and are ready."""
    stamp = now()
    statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True, "restartCount": 0,
                 "started": True, "state": {"running": {"startedAt": stamp}}} for c in pod["spec"]["containers"]]
    kube.patch_status("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], {"status": {
        "phase": "Running", "startTime": stamp, "conditions": _conditions(True, stamp),
        "containerStatuses": statuses}})


def crash_loop(kube, pod: dict, *, restarts: int = 1) -> None:
    """Status of a pod whose first container exited 1 and waits in CrashLoopBackOff."""
    stamp = now()
    first = pod["spec"]["containers"][0]
    status = {"name": first["name"], "image": first["image"], "imageID": "", "ready": False,
              "restartCount": restarts, "started": False,
              "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
              "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": stamp, "finishedAt": stamp,
                                           "containerID": "containerd://" + uuid.uuid4().hex}}}
    kube.patch_status("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], {"status": {
        "phase": "Running", "startTime": stamp, "conditions": _conditions(False, stamp),
        "containerStatuses": [status]}})


def keep_ready(kube, namespace: str, selector: str | None = None):
    """A wait_for condition step: marks every bound, not yet running pod ready (the kubelet
    starting what the scheduler placed). Returns the pods it touched."""
    touched = []
    for pod in pods(kube, namespace, selector):
        if pod["spec"].get("nodeName") and pod.get("status", {}).get("phase", "Pending") == "Pending":
            run_ready(kube, pod)
            touched.append(pod)
    return touched
