"""What every benchmark shares: realistic pod watch events, child processes, measurements.

The generator is deterministic (seeded) so the pipeline, the state-size and the storm
benchmarks all see the same kind of objects: ~2 KB pods (managedFields, env, probes,
conditions, container statuses) going through status churn, restarts, crash loops and
deletes, like a busy namespace. Nothing here patches gevent: run.py (or a child's
__main__) does that first.
"""
from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = [f"svc-{name}" for name in (
    "checkout", "cart", "payments", "search", "catalog", "auth", "users", "orders", "shipping", "email",
    "recommend", "ads", "frontend", "gateway", "inventory", "billing", "reports", "audit", "media", "chat")]
NAMESPACES = ["prod", "staging", "team-a", "team-b", "batch"]
NODES = [f"ip-10-0-{i}-{i * 7 % 250}.ec2.internal" for i in range(12)]


def dumps(doc: Any) -> bytes:
    """Compact JSON, like the apiserver writes it."""
    return json.dumps(doc, separators=(",", ":")).encode()


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# -- pods -------------------------------------------------------------------------------


@dataclass
class PodState:
    name: str
    namespace: str
    app: str
    uid: str
    created: float
    containers: list[str]
    images: list[str]
    node: str
    phase: str = "Pending"
    restarts: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)  # container -> waiting reason
    last_exit: dict[str, tuple[int, str, float]] = field(default_factory=dict)  # code, reason, finished
    ready: bool = False
    deleting: float | None = None
    probe_tick: int = 0


class PodStream:
    """Generates watch events (dicts) of a namespace-wide pods watch, with a realistic mix."""

    # Event kinds and their weights, per generated step. "storm": a bad day (restarts and
    # crash loops everywhere, ~0.7 detected changes per event); "routine": mostly status
    # churn that detection must read and drop (~0.1 changes per event).
    MIXES = {
        "storm": (("churn", 46), ("restart", 16), ("crashloop", 10), ("recover", 6), ("delete", 10),
                  ("create", 10), ("bookmark", 2)),
        "routine": (("churn", 88), ("restart", 2), ("crashloop", 1), ("recover", 1), ("delete", 3),
                    ("create", 3), ("bookmark", 2)),
    }

    def __init__(self, *, seed: int = 1, live: int = 400, start: float = 1_750_000_000.0,
                 distinct: bool = False, mix: str = "storm") -> None:
        self.rng = random.Random(seed)
        self.distinct = distinct  # worst case: every pod its own ReplicaSet (hash, image)
        self.now = start
        self.rv = 100_000
        self.pods: list[PodState] = []
        self._kinds = [k for k, _ in self.MIXES[mix]]
        self._weights = [w for _, w in self.MIXES[mix]]
        self._serial = 0
        self._hashes: dict[str, list[str]] = {}
        self.baseline: list[dict] = []
        for _ in range(live):
            pod = self._new_pod(running=True)
            self.pods.append(pod)
            self.baseline.append(self.render(pod))

    # -- building blocks ----------------------------------------------------------------

    def _rs_hashes(self, app: str) -> list[str]:
        """Two ReplicaSets per app (one rollout under way): replicas share pod-template-hash."""
        if app not in self._hashes:
            self._hashes[app] = [f"{self.rng.getrandbits(40):010x}" for _ in range(2)]
        return self._hashes[app]

    def _new_pod(self, *, running: bool) -> PodState:
        rng = self.rng
        self._serial += 1
        app = rng.choice(APPS)
        n = 1 if rng.random() < 0.7 else 2
        containers = ["app"] if n == 1 else ["app", "sidecar"]
        rs = rng.choice((0, 1))
        rs_hash = f"{rng.getrandbits(40):010x}" if self.distinct else self._rs_hashes(app)[rs]
        images = [f"registry.example.com/{app}:v1.{int(rs_hash[:4], 16) % 40}.{rs}",
                  "registry.example.com/envoy:v1.29.1"][:n]
        pod = PodState(
            name=f"{app}-{rs_hash}-{self._serial:05x}", namespace=rng.choice(NAMESPACES),
            app=app, uid=str(uuid.UUID(int=rng.getrandbits(128))), created=self.now - rng.randint(0, 86400),
            containers=containers, images=images, node=rng.choice(NODES),
        )
        pod.restarts = {c: 0 for c in containers}
        if running:
            pod.phase, pod.ready = "Running", True
        return pod

    def render(self, pod: PodState) -> dict:
        """The full pod object, as the apiserver sends it (~2 KB)."""
        self.rv += 1
        created = stamp(pod.created)
        meta = {
            "name": pod.name, "generateName": pod.name.rsplit("-", 1)[0] + "-", "namespace": pod.namespace,
            "uid": pod.uid, "resourceVersion": str(self.rv), "creationTimestamp": created,
            "labels": {"app": pod.app, "pod-template-hash": pod.name.split("-")[-2][:10], "tier": "backend"},
            "annotations": {"kubernetes.io/psp": "eks.privileged", "prometheus.io/scrape": "true"},
            # Every replica names its ReplicaSet's one uid, as in a real cluster.
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": pod.name.rsplit("-", 1)[0],
                                 "uid": str(uuid.uuid5(uuid.NAMESPACE_OID, pod.namespace + "/" + pod.name.rsplit("-", 1)[0])),
                                 "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": created, "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}],
        }
        if pod.deleting is not None:
            meta["deletionTimestamp"] = stamp(pod.deleting)
            meta["deletionGracePeriodSeconds"] = 30
        spec = {
            "containers": [{
                "name": c, "image": img, "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            } for c, img in zip(pod.containers, pod.images)],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "nodeName": pod.node, "schedulerName": "default-scheduler",
        }
        probe = stamp(self.now - pod.probe_tick)
        status: dict[str, Any] = {"phase": pod.phase, "qosClass": "Burstable", "hostIP": "10.0.3.17",
                                  "podIP": f"10.1.{len(pod.name)}.{int(pod.uid[:2], 16)}", "startTime": created}
        status["conditions"] = [
            {"type": t, "status": "True" if (pod.ready or t in ("Initialized", "PodScheduled")) else "False",
             "lastProbeTime": None, "lastTransitionTime": probe}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ]
        if pod.phase != "Pending":
            statuses = []
            for c, img in zip(pod.containers, pod.images):
                entry: dict[str, Any] = {"name": c, "image": img, "imageID": f"{img}@sha256:{pod.uid.replace('-', '')}",
                                         "containerID": f"containerd://{pod.uid.replace('-', '')}{pod.restarts[c]:04d}",
                                         "ready": pod.ready and c not in pod.waiting, "restartCount": pod.restarts[c],
                                         "started": c not in pod.waiting}
                if c in pod.waiting:
                    entry["state"] = {"waiting": {"reason": pod.waiting[c],
                                                  "message": f"back-off 5m0s restarting failed container={c} pod={pod.name}"}}
                else:
                    entry["state"] = {"running": {"startedAt": created}}
                if c in pod.last_exit:
                    code, reason, finished = pod.last_exit[c]
                    entry["lastState"] = {"terminated": {"exitCode": code, "reason": reason, "startedAt": created,
                                                         "finishedAt": stamp(finished),
                                                         "containerID": f"containerd://{pod.uid[:8]}{pod.restarts[c]:04d}"}}
                statuses.append(entry)
            status["containerStatuses"] = statuses
        return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec, "status": status}

    # -- the stream -----------------------------------------------------------------------

    def events(self, count: int) -> Iterator[dict]:
        """`count` watch events (dicts): {"type": ..., "object": ...}."""
        produced = 0
        while produced < count:
            for event in self._step():
                yield event
                produced += 1
                if produced >= count:
                    return

    def _step(self) -> list[dict]:
        rng = self.rng
        self.now += rng.random() * 0.5
        kind = rng.choices(self._kinds, self._weights)[0]
        if kind == "bookmark":
            self.rv += 1
            return [{"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                                     "metadata": {"resourceVersion": str(self.rv)}}}]
        if kind == "create" or not self.pods:
            pod = self._new_pod(running=False)
            self.pods.append(pod)
            first = {"type": "ADDED", "object": self.render(pod)}
            pod.phase, pod.ready = "Running", True
            return [first, {"type": "MODIFIED", "object": self.render(pod)}]
        pod = rng.choice(self.pods)
        if kind == "delete":
            self.pods.remove(pod)
            pod.deleting = self.now + 30
            pod.ready = False
            return [{"type": "MODIFIED", "object": self.render(pod)}, {"type": "DELETED", "object": self.render(pod)}]
        container = rng.choice(pod.containers)
        if kind == "restart":
            pod.restarts[container] += 1
            pod.last_exit[container] = (rng.choice((1, 137, 143, 2)), rng.choice(("Error", "OOMKilled")), self.now)
        elif kind == "crashloop":
            pod.restarts[container] += 1
            pod.last_exit[container] = (1, "Error", self.now)
            pod.waiting[container] = "CrashLoopBackOff"
            pod.ready = False
        elif kind == "recover":
            pod.waiting.pop(container, None)
            pod.ready = not pod.waiting
        else:  # churn: probe timestamps and ready flips, nothing detection reports
            pod.probe_tick += 1
            if rng.random() < 0.2:
                pod.ready = not pod.ready and not pod.waiting
        return [{"type": "MODIFIED", "object": self.render(pod)}]


def watch_lines(count: int, *, seed: int = 1) -> list[bytes]:
    """`count` encoded watch events (one JSON document each, no newline)."""
    return [dumps(e) for e in PodStream(seed=seed).events(count)]


def chunked(lines: list[bytes]) -> bytes:
    """The body of a chunked watch response: one HTTP chunk per event, like the apiserver."""
    parts = []
    for line in lines:
        data = line + b"\n"
        parts.append(b"%x\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


# -- processes and measurements ---------------------------------------------------------


def machine() -> dict:
    import psutil

    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def raise_fd_limit() -> tuple[int, int]:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class Child:
    """A helper process started by this benchmark (`python -m bench.<module> ...`).

    It prints one line `READY <json>` when it is ready (e.g. its port), and runs until it
    is told to stop: stop() terminates exactly this pid."""

    def __init__(self, module: str, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
            text=True, env={**os.environ, **(env or {})},
        )
        self.info: dict = {}

    def ready(self, timeout: float = 60.0) -> dict:
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"{self.proc.args}: no READY line (got {line!r}, rc={self.proc.poll()})")
        self.info = json.loads(line[6:])
        return self.info

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_child(module: str, *args: str, timeout: float = 400.0) -> dict:
    """Run a benchmark in a fresh interpreter (clean RSS, its own fd table); its last
    stdout line is its JSON result."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def best_of(runs: list[float]) -> float:
    """Rates: the best run is the one least disturbed by the other work on this machine."""
    return max(runs)


def integration(*, id: str, server: str, token: str, ca_b64: str | None, namespace: str, resource: str):
    """One parsed integration watching one resource in one namespace (bench scenarios)."""
    from painchain_connector.resources import RESOURCE_NAMES
    from painchain_connector.schemas.integration import parse_integration

    cluster = {"name": "bench", "server": server, "token": token, **({"certificate": ca_b64} if ca_b64 else {})}
    config = {"name": id, "tags": ["bench"], "clusters": [cluster], "namespaces": [namespace],
              "resources": {r: r == resource for r in RESOURCE_NAMES}}
    return parse_integration({"id": id, "type": "kubernetes", "status": "active", "config": config}).integration
