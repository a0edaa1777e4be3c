"""#9 bounded reads: the connector's RSS while hostile "apiservers" stream at it
(`python -m bench.hostile [SECONDS]`, in a fresh interpreter).

One integration per hostile answer of tests.envtest.fakeapi (endless list, endless watch
line, endless continue tokens, a 64 MiB object, a page ignoring `limit`), DEFAULT read
limits, each retried every second (the connector waits a re-sync period; a second is the
worst case). RSS is sampled every 0.1 s; the bound is what the limits allow in flight at
once: two copies (buffer + result) of MAX_LIST_PAGE_BYTES per list and of
MAX_WATCH_LINE_BYTES per watch line, for each reader of a cluster (the pods watch, its two
owner index watches and the namespace watch: 4). Prints one JSON line.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from bench.common import integration, rss  # noqa: E402
from painchain_connector.clusters import ReadLimits  # noqa: E402
from painchain_connector.metrics import Metrics  # noqa: E402
from painchain_connector.orchestration import WatchPool, wanted_watches  # noqa: E402
from painchain_connector.watching import WatchTiming  # noqa: E402
from tests.envtest.fakeapi import FakeApiServer  # noqa: E402

MODES = [("endless", "quiet"), ("huge-object", "quiet"), ("endless-continue", "quiet"), ("many-objects", "quiet"),
         ("empty", "endless-line")]


def main(seconds: float) -> dict:
    limits = ReadLimits()
    servers = []
    for listing, watching in MODES:
        server = FakeApiServer().start()
        server.listing, server.watching = listing, watching
        servers.append(server)
    pool = WatchPool(make_emit=lambda route: (lambda changes: None), metrics=Metrics(), connect_timeout=10.0,
                     limits=limits, timing=WatchTiming(forbidden_retry=1.0), probe=None)
    gc.collect()
    base = rss()
    peak = base
    integrations = [integration(id=f"hostile-{i}", server=s.url, token=f"token-{i}-hostile", ca_b64=None,
                                namespace="default", resource="pods") for i, s in enumerate(servers)]
    pool.adjust(wanted_watches(integrations))
    # Every reader of a cluster is bounded alike: the pods watch, its owner index watches
    # (ReplicaSets, Jobs) and the namespace watch of its credential set all list and watch
    # the same hostile server, each within the limits.
    readers = (len(pool.running) + len(pool.correlations.indexes)
               + sum(1 for entry in pool.notes._entries.values() if entry[2] is not None)) // len(integrations)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        gevent.sleep(0.1)
        peak = max(peak, rss())
    states = pool.states()
    errors = {str(k): r.reflector.last_error for k, r in pool.running.items()}
    sent = sum(s.bytes_sent for s in servers)
    pool.stop_all()
    for server in servers:
        server.stop()
    lists = sum(1 for listing, _ in MODES if listing != "empty")
    bound = 2 * readers * (lists * limits.max_list_page_bytes + limits.max_watch_line_bytes)
    return {"seconds": seconds, "rss_base": base, "rss_peak": peak, "growth": peak - base, "bound": bound,
            "readers_per_cluster": readers,
            "states": states, "errors": errors, "bytes_streamed": sent,
            "limits": {"page": limits.max_list_page_bytes, "line": limits.max_watch_line_bytes,
                       "objects": limits.max_list_objects, "pages": limits.max_list_pages}}


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0)))
