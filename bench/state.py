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
    return result


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
