"""#6 state per object: what the Store keeps per pod (tracemalloc), next to its ceiling.

10k varied pods (1-2 containers, restarts, crash loops, 20 apps x 2 ReplicaSets x 5
namespaces: replicas share labels and images, as in a real cluster) are projected into a
Store dict. Ceiling, same run: the same pods kept as the decoded JSON dicts (what a
naive cache, or client-go's informer, holds). Also the pickled size (the persisted state),
and a worst case where every pod is its own ReplicaSet (unique hash label and image).
"""
from __future__ import annotations

import gc
import pickle
import tracemalloc
from json import loads

import msgspec

from bench.common import PodStream, dumps
from painchain_connector import detecting
from painchain_connector.detecting import common
from painchain_connector.objects import Pod


def _pods(n: int, *, distinct: bool = False) -> list[bytes]:
    stream = PodStream(seed=11, live=n, distinct=distinct)
    for _ in stream.events(n):  # restarts, crash loops, deletes+creates: varied statuses
        pass
    return [dumps(stream.render(p)) for p in stream.pods]


def _traced(build) -> tuple[object, int]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return kept, after - before


def bench_state(*, pods: int = 10_000) -> dict:
    result = _measure(_pods(pods))
    result["worst_case"] = _measure(_pods(pods, distinct=True))
    result["index"] = _measure_index(pods // 5)
    return result


def _replica_set(i: int) -> bytes:
    """A ReplicaSet as the apiserver sends it (~2.5 KB: annotations, managedFields, template)."""
    name, hash_ = f"app-{i % 200}-{i:08x}"[:40], f"{i:010x}"
    template = {"metadata": {"labels": {"app": f"app-{i % 200}", "pod-template-hash": hash_}},
                "spec": {"containers": [{"name": "main", "image": f"registry.example/app-{i % 200}:1.{i % 7}",
                                         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                                         "env": [{"name": f"E{k}", "value": "x" * 20} for k in range(8)]}]}}
    return dumps({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
        "name": name, "namespace": f"ns-{i % 5}", "uid": f"{i:08x}-0000-4000-8000-{i:012x}",
        "resourceVersion": str(1000 + i), "generation": 3, "creationTimestamp": "2025-01-01T00:00:00Z",
        "labels": template["metadata"]["labels"],
        "annotations": {"deployment.kubernetes.io/revision": str(i % 40), "deployment.kubernetes.io/desired-replicas": "3",
                        "deployment.kubernetes.io/max-replicas": "4"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": f"app-{i % 200}",
                             "uid": f"d{i % 200:07x}-0000-4000-8000-000000000000", "controller": True,
                             "blockOwnerDeletion": True}],
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
                           "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:metadata": {"f:annotations": {}}, "f:spec": {"f:replicas": {}}}}]},
        "spec": {"replicas": 3, "selector": {"matchLabels": template["metadata"]["labels"]}, "template": template},
        "status": {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                   "observedGeneration": 3}})


def _measure_index(n: int) -> dict:
    """The owner index (correlating.py): what it keeps per ReplicaSet."""
    from painchain_connector.correlating import project_owner

    lines = [_replica_set(i) for i in range(n)]

    def index():
        store = {}
        for line in lines:
            entry = project_owner("replicasets", loads(line), 1.0)
            store[entry.uid] = entry
        return store

    store, kept = _traced(index)
    raw, raw_bytes = _traced(lambda: {i: loads(line) for i, line in enumerate(lines)})
    del store, raw
    return {"replicasets": n, "bytes_per_replicaset": kept / n, "raw_dict_bytes_per_replicaset": raw_bytes / n}


def _measure(lines: list[bytes]) -> dict:
    common.share_labels.clear()
    common.share_items.clear()

    decode = msgspec.json.Decoder(Pod).decode

    def compact_store():  # as the Reflector keeps them: decoded into the Pod shape, projected, seen_at
        store = {}
        for line in lines:
            compact = detecting.project("pods", decode(line), 1_750_000_000.5)
            store[compact.uid] = compact
        return store

    def raw_store():
        store = {}
        for line in lines:
            obj = loads(line)
            store[obj["metadata"]["uid"]] = obj
        return store

    def struct_store():  # the decoded Pod Structs themselves (issue 17: measure which is smaller)
        store = {}
        for line in lines:
            pod = decode(line)
            store[pod.metadata.uid] = pod
        return store

    store, compact_bytes = _traced(compact_store)
    n = len(store)
    pickled = len(pickle.dumps(store, protocol=pickle.HIGHEST_PROTOCOL))
    del store
    raw, raw_bytes = _traced(raw_store)
    del raw
    structs, struct_bytes = _traced(struct_store)
    del structs
    per_pod, raw_per_pod = compact_bytes / n, raw_bytes / n
    return {"pods": n, "bytes_per_pod": per_pod, "raw_dict_bytes_per_pod": raw_per_pod,
            "struct_bytes_per_pod": struct_bytes / n,
            "ratio_to_raw": per_pod / raw_per_pod, "json_bytes_per_pod": sum(map(len, lines)) / len(lines),
            "pickled_bytes_per_pod": pickled / n}


# -- workloads (issue 19): what the spec kept for Updated diffs costs ---------------------


def _deployment(i: int, rng) -> dict:
    """A typical Deployment: an app container (a sidecar in a third of them), env from
    literals and secrets, requests/limits, two probes, ports, configMap/secret volumes."""
    app = f"app-{i}"

    def container(name, image, env):
        return {
            "name": name, "image": f"registry.example/team-{i % 12}/{image}:{rng.randint(1, 40)}.{rng.randint(0, 9)}",
            "imagePullPolicy": "IfNotPresent",
            "env": [{"name": f"VAR_{n}", "value": f"value-{rng.randint(0, 10**6)}"} for n in range(env)]
            + [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{app}-db", "key": "password"}}}],
            "resources": {"requests": {"cpu": f"{rng.choice((100, 250, 500))}m", "memory": "256Mi"},
                          "limits": {"cpu": "1", "memory": f"{rng.choice((256, 512, 1024))}Mi"}},
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10,
                              "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5,
                               "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "creds", "mountPath": "/etc/creds",
                                                                          "readOnly": True}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        }

    containers = [container("main", app, rng.randint(4, 10))]
    if i % 3 == 0:
        containers.append(container("proxy", "envoy", 2))
    labels = {"app": app, "team": f"team-{i % 12}", "tier": rng.choice(("web", "api", "worker"))}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": f"ns-{i % 5}", "uid": f"{i:08d}-1111-2222-3333-444455556666",
                     "resourceVersion": str(1000 + i), "generation": 3, "creationTimestamp": "2024-05-01T10:00:00Z",
                     "labels": labels, "annotations": {"deployment.kubernetes.io/revision": "3"},
                     "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1",
                                        "time": "2024-05-01T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}}]},
        "spec": {
            "replicas": rng.randint(1, 6), "selector": {"matchLabels": {"app": app}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": labels, "annotations": {"checksum/config": f"{rng.getrandbits(128):032x}"}},
                "spec": {"containers": containers, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                         "dnsPolicy": "ClusterFirst", "serviceAccountName": app, "schedulerName": "default-scheduler",
                         "securityContext": {"runAsNonRoot": True},
                         "volumes": [{"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
                                     {"name": "creds", "secret": {"secretName": f"{app}-creds", "defaultMode": 420}}]},
            },
        },
        "status": {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
                   "availableReplicas": 3, "conditions": [
                       {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                        "lastUpdateTime": "2024-05-01T10:01:00Z", "lastTransitionTime": "2024-05-01T10:01:00Z"},
                       {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                        "lastUpdateTime": "2024-05-01T10:01:00Z", "lastTransitionTime": "2024-05-01T10:00:00Z"}]},
    }


def bench_workloads(*, workloads: int = 2_000) -> dict:
    """Bytes per Deployment in the Store, and without its packed images, labels and spec."""
    import random

    rng = random.Random(19)
    lines = [dumps(_deployment(i, rng)) for i in range(workloads)]
    common.share_labels.clear()
    common.share_items.clear()

    def compact_store(keep_spec: bool):
        store = {}
        for line in lines:
            compact = detecting.project("deployments", loads(line))
            store[compact.uid] = compact if keep_spec else compact._replace(cold=None)
        return store

    # Warm-up: the interned-string table grows (one ~400 KB resize) the first time these
    # paths and values are interned; in a running connector it has long been that size.
    compact_store(True)
    common.share_labels.clear()
    common.share_items.clear()
    store, with_spec = _traced(lambda: compact_store(True))
    pickled = len(pickle.dumps(store, protocol=pickle.HIGHEST_PROTOCOL))
    from painchain_connector.detecting.specdiff import unpack

    entries = sum(len(unpack(c.cold)[2]) // 2 for c in store.values())
    cold = sum(len(c.cold) for c in store.values())
    del store
    common.share_labels.clear()
    common.share_items.clear()
    store, without_spec = _traced(lambda: compact_store(False))
    del store
    raw, raw_bytes = _traced(lambda: {loads(line)["metadata"]["uid"]: loads(line) for line in lines})
    del raw
    n = len(lines)
    return {"workloads": n, "bytes_per_workload": with_spec / n, "bytes_without_spec": without_spec / n,
            "raw_dict_bytes_per_workload": raw_bytes / n, "ratio_to_raw": with_spec / raw_bytes,
            "paths_per_workload": entries / n, "packed_bytes_per_workload": cold / n, "pickled_bytes_per_workload": pickled / n,
            "json_bytes_per_workload": sum(map(len, lines)) / n}


if __name__ == "__main__":  # python -m bench.state workloads N: in a fresh interpreter, under gevent as in production
    import json
    import sys

    from gevent import monkey

    monkey.patch_all()
    print(json.dumps(bench_workloads(workloads=int(sys.argv[2]))))
