"""#1 pipeline throughput, #1b the kubernetes client's own Watch, and the #1 profile.

A `bench.servers stream` child serves a generated pods watch (one HTTP chunk per event,
like the apiserver). The real path is ListerWatcher (kubernetes ApiClient, token mode,
http://127.0.0.1) -> Reflector.handle_events -> project -> Store -> detect -> a null emit.
Ceilings measured in the same run, alternating with the measured runs (best of N each,
as other work shares this machine): plain `json.loads` of the same lines, and the
transport alone (ListerWatcher.watch drained, no Reflector) to split the overhead.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from json import loads

import gevent

from bench.common import Child, best_of, chunked, PodStream, dumps
from painchain_connector import detecting
from painchain_connector.clusters import ListerWatcher, build_api_client
from painchain_connector.metrics import Metrics
from painchain_connector.model import WatchKey
from painchain_connector.schemas.event import to_outgoing
from painchain_connector.model import Route
from painchain_connector.schemas.integration import Cluster
from painchain_connector.watching import Reflector, Store, WatchTiming


class _Setup:
    def __init__(self, events: int) -> None:
        stream = PodStream(seed=7)
        self.baseline = {}
        for obj in stream.baseline:
            compact = detecting.project("pods", obj)
            self.baseline[compact.uid] = compact
        self.docs = list(stream.events(events))
        self.lines = [dumps(e) for e in self.docs]
        self.mix = Counter(e["type"] for e in self.docs)
        self.mean_bytes = sum(map(len, self.lines)) / len(self.lines)
        fd, self.path = tempfile.mkstemp(prefix="painchain-bench-", suffix=".watch")
        with os.fdopen(fd, "wb") as f:
            f.write(chunked(self.lines))
        self.server = Child("bench.servers", "stream", self.path)
        port = self.server.ready()["port"]
        cluster = Cluster(name="bench", server=f"http://127.0.0.1:{port}", token="bench-token")
        self.api = build_api_client(cluster, connect_timeout=5.0)

    def close(self) -> None:
        self.server.stop()
        self.api.close()
        os.unlink(self.path)

    def lister_watcher(self) -> ListerWatcher:
        return ListerWatcher(self.api, path="/api/v1/pods", connect_timeout=5.0)

    def reflector(self, emit) -> Reflector:
        return Reflector(
            key=WatchKey("bench", "bench", "pods"), lister_watcher=self.lister_watcher(), emit=emit,
            timing=WatchTiming(), metrics=Metrics(), store=Store(dict(self.baseline)), resource_version="1",
            sleep=gevent.sleep,
        )


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn()."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def _rates(n: int, samples: list[tuple[float, float]]) -> dict:
    return {"wall_rate": best_of([n / w for w, _ in samples]), "cpu_rate": best_of([n / max(c, 1e-9) for _, c in samples])}


def bench_pipeline(*, events: int = 20_000, rounds: int = 3, k8s_events: int = 3_000,
                   profile_to: str | None = None) -> dict:
    setup = _Setup(events)
    try:
        return _run(setup, events=events, rounds=rounds, k8s_events=min(k8s_events, events), profile_to=profile_to)
    finally:
        setup.close()


def _run(setup: _Setup, *, events: int, rounds: int, k8s_events: int, profile_to: str | None) -> dict:
    lines = setup.lines
    changes = Counter()

    def null_emit(found):
        for change in found:
            changes[change.reason] += 1

    route = Route(integration_id="bench", tenant_id="t", cluster="bench", tags=("a",))

    def serialising_emit(found):
        for change in found:
            to_outgoing(change, route)

    def pipeline(emit=null_emit):
        setup.reflector(emit).watch_once()

    def transport():
        for _ in setup.lister_watcher().watch(resource_version="1", timeout_seconds=300, read_timeout=60):
            pass

    def json_only():
        for line in lines:
            loads(line)

    samples = {"pipeline": [], "transport": [], "json": [], "serialising": []}
    pipeline()  # warm-up (imports, the connection, interned strings)
    for _ in range(rounds):
        changes.clear()
        samples["json"].append(_timed(json_only))
        samples["pipeline"].append(_timed(pipeline))
        samples["transport"].append(_timed(transport))
    per_round_changes = dict(changes)
    samples["serialising"].append(_timed(lambda: pipeline(serialising_emit)))
    result = {name: _rates(events, s) for name, s in samples.items()}
    result["events"] = events
    result["mean_event_bytes"] = round(setup.mean_bytes)
    result["mix"] = dict(setup.mix)
    result["changes_detected_per_run"] = per_round_changes
    result["ratio_wall"] = result["pipeline"]["wall_rate"] / result["json"]["wall_rate"]
    result["ratio_cpu"] = result["pipeline"]["cpu_rate"] / result["json"]["cpu_rate"]
    result["k8s_watch"] = _k8s_watch(setup, k8s_events, rounds)
    if profile_to:
        result["profile"] = _profile(pipeline, profile_to)
    return result


def _k8s_watch(setup: _Setup, n: int, rounds: int) -> dict:
    """#1b: kubernetes.watch.Watch().stream(list_pod_for_all_namespaces): model classes."""
    from kubernetes import client as k8s
    from kubernetes import watch as k8s_watch

    core = k8s.CoreV1Api(api_client=setup.api)
    lines = setup.lines[:n]

    def k8s_stream():
        w = k8s_watch.Watch()
        stream = w.stream(core.list_pod_for_all_namespaces, resource_version="1", timeout_seconds=300,
                          _request_timeout=(5, 60))
        seen = 0
        try:
            for _event in stream:
                seen += 1
                if seen >= n:
                    w.stop()
                    break
        finally:
            stream.close()  # closes the response: the server sees the client go away

    def json_only():
        for line in lines:
            loads(line)

    def pipeline_n():
        reflector = setup.reflector(lambda found: None)
        events = reflector.lw.watch(resource_version="1", timeout_seconds=300, read_timeout=60)
        taken = 0
        for event in events:
            reflector.handle_events((event,))
            taken += 1
            if taken >= n:
                events.close()
                break

    samples = {"k8s": [], "json": [], "pipeline": []}
    for _ in range(rounds):
        samples["json"].append(_timed(json_only))
        samples["k8s"].append(_timed(k8s_stream))
        samples["pipeline"].append(_timed(pipeline_n))
    result = {name: _rates(n, s) for name, s in samples.items()}
    result["events"] = n
    result["ratio_to_json_wall"] = result["k8s"]["wall_rate"] / result["json"]["wall_rate"]
    result["ratio_to_pipeline_wall"] = result["k8s"]["wall_rate"] / result["pipeline"]["wall_rate"]
    result["ratio_to_pipeline_cpu"] = result["k8s"]["cpu_rate"] / result["pipeline"]["cpu_rate"]
    return result


def _profile(pipeline, path: str) -> dict:
    """pyinstrument over one pipeline run: the tree to `path`, the top self-time functions back."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return {"skipped": "pyinstrument not installed (pip install pyinstrument)"}
    profiler = Profiler(interval=0.0005)
    profiler.start()
    pipeline()
    profiler.stop()
    with open(path, "w") as f:
        f.write(profiler.output_text(unicode=False, color=False, show_all=False))
    session = profiler.last_session
    selfs: Counter = Counter()

    def walk(frame):
        if frame is None:
            return
        if not frame.children or frame.total_self_time:
            where = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
            selfs[where] += frame.total_self_time
        for child in frame.children:
            walk(child)

    root = session.root_frame()
    walk(root)
    total = session.duration or 1.0
    return {
        "file": os.path.relpath(path),
        "duration_s": round(session.duration, 3),
        "top_self": [(name, round(100 * t / total, 1)) for name, t in selfs.most_common(15)],
        "by_area": _by_area(root, total),
    }


_AREAS = (
    ("detect", "detecting/pods.py", "detect"), ("project", "detecting/pods.py", "project"),
    ("json.loads", "json/", None), ("prometheus", "prometheus_client", None), ("urllib3", "urllib3", None),
    ("http.client/socket", "http/client.py", None), ("gevent/socket", "gevent", None),
)


def _by_area(root, total: float) -> dict:
    """Self time grouped by library/area (inclusive of what each area's own calls do inside it)."""
    areas: Counter = Counter()

    def walk(frame):
        path = frame.file_path or ""
        for name, needle, func in _AREAS:
            if needle in path and (func is None or frame.function == func):
                areas[name] += _inclusive(frame)
                return  # attributed: do not count its children again
        areas_self = frame.total_self_time
        if areas_self:
            areas["other"] += areas_self
        for child in frame.children:
            walk(child)

    walk(root)
    return {k: round(100 * v / total, 1) for k, v in areas.most_common()}


def _inclusive(frame) -> float:
    return frame.time
