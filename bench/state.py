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

from bench.common import PodStream, dumps
from painchain_connector import detecting
from painchain_connector.detecting import common


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

    def compact_store():
        store = {}
        for line in lines:
            compact = detecting.project("pods", loads(line))
            store[compact.uid] = compact
        return store

    def raw_store():
        store = {}
        for line in lines:
            obj = loads(line)
            store[obj["metadata"]["uid"]] = obj
        return store

    store, compact_bytes = _traced(compact_store)
    n = len(store)
    pickled = len(pickle.dumps(store, protocol=pickle.HIGHEST_PROTOCOL))
    del store
    raw, raw_bytes = _traced(raw_store)
    del raw
    per_pod, raw_per_pod = compact_bytes / n, raw_bytes / n
    return {"pods": n, "bytes_per_pod": per_pod, "raw_dict_bytes_per_pod": raw_per_pod,
            "ratio_to_raw": per_pod / raw_per_pod, "json_bytes_per_pod": sum(map(len, lines)) / len(lines),
            "pickled_bytes_per_pod": pickled / n}
