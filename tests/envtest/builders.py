"""Minimal valid manifests (plain dicts) for the kinds the connector watches.

Pure functions, no I/O. Each builder returns the smallest object the 1.20 apiserver
accepts, with labels wired so that selectors match; tests merge-patch from there.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

DEFAULT_IMAGE = "registry.example/app:1.0"


def _meta(name: str, labels: dict | None, namespace: str | None = None) -> dict:
    meta = {"name": name, "labels": dict(labels or {"app": name})}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _pod_spec(image: str, *, node: str | None = None) -> dict:
    spec = {"containers": [{"name": "main", "image": image}], "terminationGracePeriodSeconds": 0}
    if node:
        spec["nodeName"] = node
    return spec


def make_pod(name: str, *, image: str = DEFAULT_IMAGE, node: str | None = "node-1",
             labels: dict | None = None, namespace: str | None = None) -> dict:
    """A pod already "scheduled" to `node` (no scheduler runs here). node=None leaves it
    unscheduled: it is kept, Pending, exactly like a pod waiting for a scheduler."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, labels, namespace),
            "spec": _pod_spec(image, node=node)}


def _template(name: str, image: str, labels: dict | None) -> tuple[dict, dict]:
    labels = dict(labels or {"app": name})
    template = {"metadata": {"labels": labels}, "spec": _pod_spec(image)}
    return {"matchLabels": labels}, template


def make_deployment(name: str, *, image: str = DEFAULT_IMAGE, replicas: int = 1,
                    labels: dict | None = None, namespace: str | None = None) -> dict:
    selector, template = _template(name, image, labels)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, labels, namespace),
            "spec": {"replicas": replicas, "selector": selector, "template": template}}


def make_statefulset(name: str, *, image: str = DEFAULT_IMAGE, replicas: int = 1,
                     labels: dict | None = None, service_name: str | None = None,
                     namespace: str | None = None) -> dict:
    selector, template = _template(name, image, labels)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(name, labels, namespace),
            "spec": {"replicas": replicas, "selector": selector, "template": template,
                     "serviceName": service_name or name}}


def make_daemonset(name: str, *, image: str = DEFAULT_IMAGE, labels: dict | None = None,
                   namespace: str | None = None) -> dict:
    selector, template = _template(name, image, labels)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta(name, labels, namespace),
            "spec": {"selector": selector, "template": template}}


def make_service(name: str, *, selector: dict | None = None, ports: tuple[int, ...] = (80,),
                 type: str = "ClusterIP", labels: dict | None = None,
                 namespace: str | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, labels, namespace),
            "spec": {"type": type, "selector": dict(selector or {"app": name}),
                     "ports": [{"name": f"p{p}", "port": p, "targetPort": p} for p in ports]}}


def make_configmap(name: str, *, data: dict | None = None, namespace: str | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, {}, namespace),
            "data": dict(data or {})}


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_event(involved: dict, *, reason: str, message: str = "", type: str = "Normal",
               count: int = 1, component: str = "kubelet", host: str | None = None,
               name: str | None = None, timestamp: str | None = None) -> dict:
    """A core/v1 Event about `involved` (an object as returned by the apiserver, or at
    least its apiVersion/kind/metadata). Lands in the object's namespace, as the
    apiserver requires; eventTime stays null, as with every core/v1 Event from kubelet."""
    meta = involved["metadata"]
    ts = timestamp or now_rfc3339()
    source = {"component": component}
    if host:
        source["host"] = host
    ref = {"apiVersion": involved.get("apiVersion", "v1"), "kind": involved["kind"],
           "name": meta["name"], "namespace": meta.get("namespace")}
    for key in ("uid", "resourceVersion"):
        if meta.get(key):
            ref[key] = meta[key]
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name or f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                     "namespace": meta.get("namespace")},
        "involvedObject": ref, "reason": reason, "message": message, "type": type,
        "count": count, "firstTimestamp": ts, "lastTimestamp": ts, "source": source,
    }
