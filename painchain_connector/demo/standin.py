"""Stands in for the controllers and the kubelet that the demo's control plane lacks.

The embedded cluster runs only etcd and kube-apiserver, so whatever the deployment and
ReplicaSet controllers and the kubelet would write, the story writes through the API
itself, the way the e2e scenario tests do: ReplicaSets and their pods, pod `/status`
(running, crashed, back-off), Deployment `/status` (rollout progress), and the kubelet's
core/v1 Events. The connector cannot tell the difference: it only watches the API.

Names follow the controllers' shapes (`web-<template hash>-<suffix>`) and are
deterministic, so the story's expected events can name the pods. No I/O but through
`kube`; starts no greenlets.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from .kube import Kube, KubeError

NODE = "demo-node-1"
# The alphabet Kubernetes uses for generated names (no vowels, no look-alike characters).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _generated(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:length])


def template_hash(image: str) -> str:
    """The pod-template-hash of a template differing only by image (10 characters, like kube's)."""
    return _generated(image, 10)


def pod_name(deployment: str, image: str, index: int) -> str:
    return f"{deployment}-{template_hash(image)}-{_generated(f'{image}/{index}', 5)}"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner(obj: dict) -> dict:
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


class StandIn:
    """The deployment controller, the ReplicaSet controller and the kubelet, for one namespace."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    # -- the deployment and ReplicaSet controllers ----------------------------------------

    def replica_set(self, deployment: dict, image: str, replicas: int) -> dict:
        """Creates the ReplicaSet of `deployment`'s template with `image` (or scales it)."""
        name = f"{deployment['metadata']['name']}-{template_hash(image)}"
        labels = {**deployment["spec"]["template"]["metadata"]["labels"], "pod-template-hash": template_hash(image)}
        try:
            self.kube.get("replicasets", self.namespace, name)
        except KubeError as exc:
            if exc.status != 404:
                raise
        else:
            return self.kube.patch("replicasets", self.namespace, name, {"spec": {"replicas": replicas}})
        template = {"metadata": {"labels": labels}, "spec": self._pod_spec(deployment, image)}
        return self.kube.create("replicasets", self.namespace, {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "labels": labels, "ownerReferences": [_owner(deployment)]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template},
        })

    def pod(self, replica_set: dict, index: int, image: str) -> str:
        """Creates pod `index` of `replica_set`, scheduled to the demo node (still Pending)."""
        deployment = replica_set["metadata"]["ownerReferences"][0]["name"]
        name = pod_name(deployment, image, index)
        self.kube.create("pods", self.namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": replica_set["spec"]["template"]["metadata"]["labels"],
                         "ownerReferences": [_owner(replica_set)]},
            "spec": {**replica_set["spec"]["template"]["spec"], "nodeName": NODE},
        })
        return name

    def deployment_status(self, name: str, *, generation: int, replicas: int, updated: int, ready: int,
                          complete: bool) -> None:
        """The rollout's progress as the deployment controller reports it."""
        reason = "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated"
        stamp = _now()
        self.kube.patch_status("deployments", self.namespace, name, {"status": {
            "observedGeneration": generation, "replicas": replicas, "updatedReplicas": updated,
            "readyReplicas": ready, "availableReplicas": ready, "unavailableReplicas": max(replicas - ready, 0),
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability.", "lastUpdateTime": stamp,
                 "lastTransitionTime": stamp},
                {"type": "Progressing", "status": "True", "reason": reason,
                 "message": f'ReplicaSet "{name}" is progressing.', "lastUpdateTime": stamp,
                 "lastTransitionTime": stamp},
            ],
        }})

    # -- the kubelet ------------------------------------------------------------------------

    def running(self, pod: str, image: str) -> None:
        stamp = _now()
        self._status(pod, phase="Running", startTime=stamp, podIP="10.244.0.%d" % (sum(pod.encode()) % 250 + 2),
                     conditions=[{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
                                 for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                     containerStatuses=[self._container(image, {"running": {"startedAt": stamp}}, ready=True)])

    def crashed(self, pod: str, image: str, *, exit_code: int, message: str) -> dict:
        """The container exited: the kubelet reports the termination (returned, for `back_off`)."""
        terminated = self._terminated(pod, exit_code, message)
        self._status(pod, phase="Running", containerStatuses=[self._container(image, {"terminated": terminated})])
        return terminated

    def restarted(self, pod: str, image: str, *, restarts: int, last: dict) -> None:
        """The kubelet started the container again; `last` is how it ended before."""
        self._status(pod, phase="Running", containerStatuses=[self._container(
            image, {"running": {"startedAt": _now()}}, restarts=restarts, last={"terminated": last})])

    def back_off(self, pod: str, image: str, *, restarts: int, last: dict, delay: str) -> None:
        """The kubelet waits before the next restart (CrashLoopBackOff); `last` is the last exit."""
        self._status(pod, phase="Running", containerStatuses=[self._container(
            image, {"waiting": {"reason": "CrashLoopBackOff",
                                "message": f"back-off {delay} restarting failed container=main pod={pod}"}},
            restarts=restarts, last={"terminated": last})])

    def warning(self, pod: str, *, reason: str, message: str) -> None:
        """A core/v1 Event from the kubelet about `pod`."""
        stamp = _now()
        self.kube.create("events", self.namespace, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{pod}.{_generated(pod + reason + stamp, 16)}"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": self.namespace,
                               "fieldPath": "spec.containers{main}"},
            "reason": reason, "message": message, "type": "Warning", "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": "kubelet", "host": NODE},
        })

    def delete_pod(self, pod: str) -> None:
        self.kube.delete("pods", self.namespace, pod, grace_period_seconds=0)

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _pod_spec(deployment: dict, image: str) -> dict:
        spec = deployment["spec"]["template"]["spec"]
        return {**spec, "containers": [{**spec["containers"][0], "image": image}]}

    def _status(self, pod: str, **status) -> None:
        self.kube.patch_status("pods", self.namespace, pod, {"status": status})

    @staticmethod
    def _container(image: str, state: dict, *, ready: bool = False, restarts: int = 0, last: dict | None = None) -> dict:
        status = {"name": "main", "image": image, "imageID": "", "ready": ready, "restartCount": restarts,
                  "started": ready, "state": state}
        if last:
            status["lastState"] = last
        return status

    @staticmethod
    def _terminated(pod: str, exit_code: int, message: str) -> dict:
        return {"exitCode": exit_code, "reason": "Error", "message": message,
                "containerID": "containerd://" + hashlib.sha256(pod.encode()).hexdigest()[:64],
                "startedAt": _now(), "finishedAt": _now()}
