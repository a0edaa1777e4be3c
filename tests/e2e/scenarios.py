"""Helpers of the detection scenario tests: the marker technique and kubelet-style pod status.

To prove "nothing was emitted", a scenario writes a marker object afterwards and waits
for its change: one watch stream is ordered, so every earlier write has been seen by then.
"""
import uuid
from contextlib import contextmanager

from tests.e2e.helpers import Collector, make_integration, only, start_pool, wait_watching
from tests.envtest.builders import (DEFAULT_IMAGE, make_daemonset, make_deployment, make_event, make_pod, make_service,
                                    make_statefulset)

T0 = "2024-05-01T10:00:00Z"
RUNNING = {"running": {"startedAt": T0}}
CREATED_KIND = {"services": ("Service", make_service), "deployments": ("Deployment", make_deployment),
                "statefulsets": ("StatefulSet", make_statefulset), "daemonsets": ("DaemonSet", make_daemonset)}


# -- helpers shared with the workloads file ----------------------------------------------

def integration(control_plane, namespace, *resources, server=None, **kw):
    return make_integration(server=server or control_plane.server, token=control_plane.admin_token,
                            ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only(*resources), **kw)


@contextmanager
def watching(control_plane, namespace, resource):
    """A pool watching one resource in `namespace`, live; yields its Collector."""
    collector = Collector()
    pool, _ = start_pool([integration(control_plane, namespace, resource)], collector=collector)
    try:
        wait_watching(pool)
        yield collector
    finally:
        pool.stop_all()


def _write_marker(kube, namespace, resource) -> str:
    name = f"marker-{uuid.uuid4().hex[:6]}"
    if resource == "pods":
        kube.create("pods", namespace, make_pod(name))
        set_pod(kube, namespace, name)
        return f"Pod Created: {name}"
    if resource == "events":
        kube.create("events", namespace, make_event(pod_ref(namespace, name), reason="Marker", type="Warning"))
        return f"K8s Event [Warning]: Marker - Pod/{name}"
    kind, build = CREATED_KIND[resource]
    kube.create(resource, namespace, build(name))
    return f"{kind} Created: {name}"


def settled(kube, namespace, collector, resource) -> list[str]:
    """Writes a marker, waits for its change, returns every title so far except markers'."""
    collector.wait_titles(_write_marker(kube, namespace, resource))
    return [t for t in collector.titles() if "marker-" not in t]


def change(collector, title):
    found = [c for _, c in collector.items if c.title == title]
    assert len(found) == 1, f"{title!r} emitted {len(found)} times"
    return found[0]


# -- pod status as kubelet writes it ------------------------------------------------------

def pod_ref(namespace, name):
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace}}


def container(state, *, restarts=0, ready=False, last=None):
    status = {"name": "main", "image": DEFAULT_IMAGE, "imageID": "", "ready": ready,
              "restartCount": restarts, "state": state}
    if last:
        status["lastState"] = last
    return status


def waiting(reason, message=""):
    return {"waiting": {"reason": reason, "message": message}}


def terminated(code, reason, *, cid="containerd://0123456789abcdef0123", finished="2024-05-01T10:05:00Z"):
    return {"terminated": {"exitCode": code, "reason": reason, "containerID": cid,
                           "startedAt": T0, "finishedAt": finished}}


def set_pod(kube, namespace, name, *containers, phase="Running", **status):
    body = {"phase": phase, **status}
    if containers:
        body["containerStatuses"] = list(containers)
    kube.patch_status("pods", namespace, name, {"status": body})


def ready_conditions(status, stamp):
    return [{"type": t, "status": status, "lastProbeTime": None, "lastTransitionTime": stamp}
            for t in ("Ready", "ContainersReady")]
