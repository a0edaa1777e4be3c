"""What the #1 proposals would buy: the pipeline with each one patched in, in this process.

    python -m bench.whatif        (not part of run.py; ~1 minute)

Nothing in painchain_connector/ is edited: each variant monkeypatches the package for one
run and restores it. Variants (the proposals in the bench report):
  A  Reflector caches its labelled metric children (one .labels() per kind per watch)
     and builds one DetectContext per second instead of one per event
  B  make_change() without bounded()'s json.dumps of every change's data
  D  project_labels() keyed by the raw labels' items (one tuple hash; intern on a miss)
  E  orjson.loads in clusters._lines (needs orjson installed; skipped otherwise)
Ratios are CPU-time rates against plain json.loads of the same lines, same run.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import time  # noqa: E402
from json import loads  # noqa: E402

import gevent  # noqa: E402

from bench.pipeline import _Setup, _timed  # noqa: E402
from painchain_connector import clusters  # noqa: E402
from painchain_connector.detecting import common, pods  # noqa: E402
from painchain_connector.metrics import Metrics  # noqa: E402
from painchain_connector.model import DetectContext, WatchKey  # noqa: E402
from painchain_connector.watching import Reflector, Store, WatchTiming, _watch_error  # noqa: E402

try:
    import orjson
except ImportError:
    orjson = None

ORIGINAL = {"bounded": common.bounded, "json": clusters.json, "labels": pods.project_labels}


class CachingReflector(Reflector):
    """A: labelled children cached per kind; one DetectContext per second."""

    _ctx_cache: tuple | None = None

    def handle_events(self, events) -> None:
        resource, counters = self.key.resource, {}
        for event in events:
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "BOOKMARK":
                self.resource_version = (obj.get("metadata") or {}).get("resourceVersion", self.resource_version)
                continue
            if kind == "ERROR":
                raise _watch_error(obj)
            counter = counters.get(kind)
            if counter is None:
                counter = counters[kind] = self.metrics.events_observed.labels(resource, kind)
            counter.inc()
            self.apply(kind, obj)

    def _ctx(self) -> DetectContext:
        now = time.monotonic()
        if self._ctx_cache is None or now - self._ctx_cache[0] > 1.0:
            self._ctx_cache = (now, super()._ctx())
        return self._ctx_cache[1]


_LABELS: dict = {}


def labels_by_items(labels):
    """D: the shared flat tuple, found by the raw items; interned only on a miss."""
    if not labels:
        return ()
    key = tuple(labels.items())
    found = _LABELS.get(key)
    if found is None:
        if len(_LABELS) >= 4096:
            _LABELS.clear()
        found = _LABELS[key] = ORIGINAL["labels"](labels)
    return found


class _Orjson:
    loads = staticmethod(orjson.loads) if orjson else None


def _patched(flags: str):
    common.bounded = (lambda data: data) if "B" in flags else ORIGINAL["bounded"]
    clusters.json = _Orjson if "E" in flags else ORIGINAL["json"]
    pods.project_labels = labels_by_items if "D" in flags else ORIGINAL["labels"]
    return CachingReflector if "A" in flags else Reflector


def _restore() -> None:
    _patched("")


def main(events: int = 20_000, rounds: int = 3) -> dict:
    setup = _Setup(events)
    variants = {"current": "", "A": "A", "B": "B", "D": "D", "A+B+D": "ABD"}
    if orjson is not None:
        variants["A+B+D+E"] = "ABDE"
    out = {}
    try:
        for workload in (setup.storm, setup.routine):
            def run(flags, w=workload):
                cls = _patched(flags)
                try:
                    cls(key=WatchKey("b", "b", "pods", w.mix), lister_watcher=setup.lister_watcher(w),
                        emit=lambda changes: None, timing=WatchTiming(), metrics=Metrics(),
                        store=Store(dict(w.baseline)), resource_version="1", sleep=gevent.sleep).watch_once()
                finally:
                    _restore()

            def json_only(w=workload):
                for line in w.lines:
                    loads(line)

            run("")
            rates: dict[str, list[float]] = {"json.loads": [], **{name: [] for name in variants}}
            for _ in range(rounds):
                rates["json.loads"].append(events / _timed(json_only)[1])
                for name, flags in variants.items():
                    rates[name].append(events / _timed(lambda f=flags: run(f))[1])
            ceiling = max(rates["json.loads"])
            out[workload.mix] = {name: {"cpu_rate": round(max(r)), "ratio": round(max(r) / ceiling, 3)}
                                 for name, r in rates.items()}
    finally:
        setup.close()
    return out


if __name__ == "__main__":
    result = main()
    for mix, rows in result.items():
        print(mix)
        for name, row in rows.items():
            print(f"  {name:10s} {row['cpu_rate']:>8,} ev/s CPU   ratio to json.loads {row['ratio']:.2f}")
    if orjson is None:
        print("(E skipped: orjson is not installed in this environment)")
    print(json.dumps(result))
