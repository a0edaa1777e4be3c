"""#1 pipeline throughput, #1b the kubernetes client's own Watch, and the #1 profile.

A `bench.servers stream` child serves generated pods watches (one HTTP chunk per event,
like the apiserver): a "storm" mix (restarts, crash loops, deletes, creates, status
churn: ~0.7 detected changes per event) and a "routine" one (mostly status churn).
The real path is ListerWatcher (kubernetes ApiClient, token mode, http://127.0.0.1) ->
Reflector.handle_events -> project -> Store -> detect -> a counting emit. Ceilings are
measured in the same run, alternating with the measured runs (best of N each, as other
work shares this machine): plain `json.loads` of the same lines, and the transport alone
(ListerWatcher.watch drained, no Reflector) to split the overhead. The profile
(pyinstrument) is taken on a separate, untimed run.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from json import loads

import gevent

from bench.common import Child, PodStream, best_of, chunked, dumps
from painchain_connector import detecting
from painchain_connector.clusters import ListerWatcher, build_api_client
from painchain_connector.metrics import Metrics
from painchain_connector.model import Route, WatchKey
from painchain_connector.objects import SHAPES, Pod, decode_event
from painchain_connector.schemas.event import to_outgoing
from painchain_connector.schemas.integration import Cluster
from painchain_connector.watching import Reflector, Store, WatchTiming


class _Workload:
    """One generated watch stream and the Store baseline it starts from."""

    def __init__(self, mix: str, events: int, seed: int) -> None:
        stream = PodStream(seed=seed, mix=mix)
        self.mix = mix
        self.baseline = {}
        for obj in stream.baseline:
            compact = detecting.project("pods", obj)
            self.baseline[compact.uid] = compact
        docs = list(stream.events(events))
        self.lines = [dumps(e) for e in docs]
        self.types = Counter(e["type"] for e in docs)
        self.mean_bytes = sum(map(len, self.lines)) / len(self.lines)
        self.path = f"/api/v1/namespaces/{mix}/pods"
        fd, self.file = tempfile.mkstemp(prefix=f"painchain-bench-{mix}-", suffix=".watch")
        with os.fdopen(fd, "wb") as f:
            f.write(chunked(self.lines))


class _Setup:
    def __init__(self, events: int) -> None:
        self.storm = _Workload("storm", events, seed=7)
        self.routine = _Workload("routine", events, seed=8)
        self.server = Child("bench.servers", "stream", *(f"{w.mix}={w.file}" for w in (self.storm, self.routine)))
        port = self.server.ready()["port"]
        cluster = Cluster(name="bench", server=f"http://127.0.0.1:{port}", token="bench-token")
        self.api = build_api_client(cluster, connect_timeout=5.0)

    def close(self) -> None:
        self.server.stop()
        self.api.close()
        for w in (self.storm, self.routine):
            os.unlink(w.file)

    def lister_watcher(self, workload: _Workload) -> ListerWatcher:
        return ListerWatcher(self.api, path=workload.path, connect_timeout=5.0, shape=SHAPES["pods"])

    def reflector(self, workload: _Workload, emit) -> Reflector:
        return Reflector(
            key=WatchKey("bench", "bench", "pods", workload.mix), lister_watcher=self.lister_watcher(workload),
            emit=emit, timing=WatchTiming(), metrics=Metrics(), store=Store(dict(workload.baseline)),
            resource_version="1", sleep=gevent.sleep,
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
        result = _run(setup, events=events, rounds=rounds, profile_to=profile_to)
        result["k8s_watch"] = _k8s_watch(setup, min(k8s_events, events), rounds)
        return result
    finally:
        setup.close()


def _run(setup: _Setup, *, events: int, rounds: int, profile_to: str | None) -> dict:
    changes = {"storm": Counter(), "routine": Counter()}
    route = Route(integration_id="bench", tenant_id="t", cluster="bench", tags=("a",))

    def counting_emit(into: Counter):
        def emit(found):
            for change in found:
                into[change.reason] += 1
        return emit

    def serialising_emit(found):
        for change in found:
            to_outgoing(change, route)

    def pipeline(workload: _Workload, emit=None):
        setup.reflector(workload, emit or counting_emit(changes[workload.mix])).watch_once()

    def transport(workload: _Workload):
        lw = setup.lister_watcher(workload)
        for _ in lw.watch(resource_version="1", timeout_seconds=300, read_timeout=60):
            pass

    def json_only(workload: _Workload):
        for line in workload.lines:
            loads(line)

    def decode_only(workload: _Workload):
        for line in workload.lines:
            decode_event(line, Pod)

    storm, routine = setup.storm, setup.routine
    tests = {
        "json": lambda: json_only(storm),
        "pipeline": lambda: pipeline(storm),
        "transport": lambda: transport(storm),
        "decode": lambda: decode_only(storm),
        "routine_json": lambda: json_only(routine),
        "routine": lambda: pipeline(routine),
    }
    samples = {name: [] for name in tests}
    pipeline(storm)  # warm-up (imports, the connection, interned strings)
    pipeline(routine)
    for _ in range(rounds):
        for c in changes.values():
            c.clear()
        for name, test in tests.items():
            samples[name].append(_timed(test))
    samples["serialising"] = [_timed(lambda: pipeline(storm, serialising_emit))]
    result = {name: _rates(events, s) for name, s in samples.items()}
    for w in (storm, routine):
        result[f"{w.mix}_mix"] = {"types": dict(w.types), "mean_event_bytes": round(w.mean_bytes),
                                  "changes": dict(changes[w.mix]),
                                  "changes_per_event": round(sum(changes[w.mix].values()) / events, 2)}
    result["events"] = events
    result["mean_event_bytes"] = round(storm.mean_bytes)
    result["ratio_wall"] = result["pipeline"]["wall_rate"] / result["json"]["wall_rate"]
    result["ratio_cpu"] = result["pipeline"]["cpu_rate"] / result["json"]["cpu_rate"]
    result["routine_ratio_wall"] = result["routine"]["wall_rate"] / result["routine_json"]["wall_rate"]
    if profile_to:
        result["profile"] = _profile(lambda: pipeline(storm), profile_to)
    return result


def _k8s_watch(setup: _Setup, n: int, rounds: int) -> dict:
    """#1b: kubernetes.watch.Watch().stream(list_namespaced_pod): model classes."""
    from kubernetes import client as k8s
    from kubernetes import watch as k8s_watch

    core = k8s.CoreV1Api(api_client=setup.api)
    workload = setup.storm
    lines = workload.lines[:n]

    def k8s_stream():
        w = k8s_watch.Watch()
        stream = w.stream(core.list_namespaced_pod, workload.mix, resource_version="1", timeout_seconds=300,
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
        reflector = setup.reflector(workload, lambda found: None)
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
    root = session.root_frame()
    selfs: Counter = Counter()
    areas: Counter = Counter()

    def walk(frame, parent, area):
        # Outermost matching area wins: json.dumps called by detection counts as detection.
        if area is None:
            path = frame.file_path or ""
            area = next((name for name, needle, func in _AREAS
                         if needle in path and (func is None or frame.function == func)), None)
        if not frame.children:  # leaves carry all the time, exactly once
            owner = parent if (frame.is_synthetic and parent is not None) else frame
            selfs[f"{owner.function} ({owner.file_path_short}:{owner.line_no})"] += frame.time
            areas[area or "other (reflector, dispatch, ctx, ...)"] += frame.time
        for child in frame.children:
            walk(child, frame, area)

    walk(root, None, None)
    total = sum(areas.values()) or 1.0
    return {
        "file": os.path.relpath(path),
        "duration_s": round(session.duration, 3),
        "top_self": [(name, round(100 * t / total, 1)) for name, t in selfs.most_common(15)],
        "by_area": {k: round(100 * v / total, 1) for k, v in areas.most_common()},
    }


_AREAS = (
    ("detect", "detecting/pods.py", "detect"), ("project", "detecting/pods.py", "project"),
    ("json.loads", "json/", None), ("prometheus", "prometheus_client", None), ("urllib3+http.client", "urllib3", None),
)
