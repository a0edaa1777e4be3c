"""#2 delivery throughput and #7 memory under a storm with the backend down.

#2: Outbox (8 senders) -> BackendClient -> tests.fakebackend.FakeBackend in a child
process (the real backend is another process too), events of 32 integrations so eight
queues can be served at once. Ceiling, same run, alternating: a bare requests.Session
(same pool size) posting the same bodies from 8 greenlets; and urllib3's connection pool
used directly, which shows what the client library itself costs. CPU per event of this
process and of the backend's tells which side is the bottleneck. A single-integration
run shows the per-queue order constraint (one post at a time per integration).

#7 runs in a fresh interpreter (`python -m bench.delivery storm ...`) so its RSS is its
own: 100k events put into an Outbox whose backend refuses connections, no spool.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import itertools
import json
import sys
import time

import gevent

from bench.common import Child, PodStream, best_of, rss
from painchain_connector import detecting
from painchain_connector.backend import BackendClient
from painchain_connector.delivering import Outbox
from painchain_connector.metrics import Metrics
from painchain_connector.model import DetectContext, Outgoing, Route
from painchain_connector.schemas.event import to_outgoing
from painchain_connector.settings import Settings

INTEGRATIONS = 32
_run_ids = itertools.count(1)


def sample_changes(count: int = 400) -> list:
    """Real detected changes (restarts, crash loops, deletes...) of the generated stream."""
    from datetime import datetime, timezone

    stream = PodStream(seed=3)
    store = {}
    for obj in stream.baseline:
        compact = detecting.project("pods", obj)
        store[compact.uid] = compact
    ctx = DetectContext(cluster="prod-eu", observed_at=datetime.now(timezone.utc))
    found = []
    for event in stream.events(count * 4):
        if event["type"] == "BOOKMARK":
            continue
        compact = detecting.project("pods", event["object"])
        deleted = event["type"] == "DELETED"
        changes, state = detecting.detect("pods", store.get(compact.uid), compact, deleted=deleted, ctx=ctx)
        if deleted:
            store.pop(compact.uid, None)
        else:
            store[compact.uid] = state
        found += changes
        if len(found) >= count:
            break
    return found[:count]


def outgoing(n: int, *, integrations: int = INTEGRATIONS, changes=None) -> list[Outgoing]:
    """n events with ids unique to this call (the backend stores each one: no dedupe shortcut)."""
    changes = changes or sample_changes()
    run = next(_run_ids)
    items = []
    for i in range(n):
        route = Route(integration_id=f"bench-{i % integrations}", tenant_id=None, cluster="prod-eu", tags=("bench",))
        item = to_outgoing(changes[i % len(changes)], route)
        body = dict(item.body, externalId=f"{item.external_id}:r{run}:{i}")
        items.append(Outgoing(tenant_id=None, integration_id=item.integration_id, external_id=body["externalId"],
                              payload=json.dumps(body).encode(), kind=item.kind, cluster=item.cluster))
    return items


def _outbox_run(url: str, items: list[Outgoing], senders: int) -> float:
    client = BackendClient(base_url=url, connect_timeout=5.0, read_timeout=10.0, pool_size=senders + 2)
    metrics = Metrics()
    outbox = Outbox(poster=client, settings=Settings(senders=senders, outbox_max=len(items) + 10), metrics=metrics)
    for item in items:
        outbox.put(item)
    started = time.perf_counter()
    outbox.start()
    outbox._drained.wait(120)  # noqa: SLF001 - a benchmark may wait on the drain event
    elapsed = time.perf_counter() - started
    outbox.stop(1)
    client.close()
    stored = _count(metrics.events_posted, "result", "stored")
    if stored != len(items):
        raise RuntimeError(f"outbox stored {stored} of {len(items)} events")
    return elapsed


def _count(counter, label: str, value: str) -> int:
    return int(sum(s.value for m in counter.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels.get(label) == value))


def _raw_run(url: str, items: list[Outgoing], senders: int) -> float:
    """Ceiling: a bare requests.Session, same pool size, same bodies and headers."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=senders + 2, max_retries=0))

    def post(item):
        return session.post(url + "/events", data=item.payload, timeout=(5, 10),
                            headers={"Content-Type": "application/json", "Accept": "application/json"}).status_code

    try:
        return _concurrently(post, items, senders)
    finally:
        session.close()


def _urllib3_run(url: str, items: list[Outgoing], senders: int) -> float:
    """What a lighter client reaches: urllib3's HTTPConnectionPool directly (no requests)."""
    import urllib3

    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=senders + 2, retries=False,
                                      timeout=urllib3.Timeout(connect=5, read=10))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    prefix = "/" + url.split("//", 1)[1].split("/", 1)[1]

    def post(item):
        return pool.urlopen("POST", prefix + "/events", body=item.payload, headers=headers).status

    try:
        return _concurrently(post, items, senders)
    finally:
        pool.close()


def _concurrently(post, items: list[Outgoing], senders: int) -> float:
    work = iter(items)

    def sender():
        for item in work:
            status = post(item)
            if status >= 300:
                raise RuntimeError(f"post answered {status}")

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(sender) for _ in range(senders)], raise_error=True)
    return time.perf_counter() - started


def bench_delivery(*, events: int = 8_000, rounds: int = 3, senders: int = 8) -> dict:
    import psutil

    backend = Child("bench.servers", "backend", str(INTEGRATIONS))
    url = f"http://127.0.0.1:{backend.ready()['port']}/api"
    server = psutil.Process(backend.proc.pid)
    runs = {"outbox": _outbox_run, "raw": _raw_run, "urllib3": _urllib3_run}
    try:
        changes = sample_changes()
        _raw_run(url, outgoing(300, changes=changes), senders)  # warm-up: connections, server code paths
        rates: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                items = outgoing(events, changes=changes)
                c0, s0 = time.process_time(), sum(server.cpu_times()[:2])
                rates[name].append(events / run(url, items, senders))
                cpu[name].append((1e6 * (time.process_time() - c0) / events,
                                  1e6 * (sum(server.cpu_times()[:2]) - s0) / events))
        single_n = max(500, events // 8)
        single = single_n / _outbox_run(url, outgoing(single_n, integrations=1, changes=changes), senders)
    finally:
        backend.stop()
    mean_body = sum(len(i.payload) for i in outgoing(200, changes=changes)) / 200
    best = {name: best_of(r) for name, r in rates.items()}
    cpu_us = {name: {"client_us_per_event": round(min(c for c, _ in v)), "server_us_per_event": round(min(s for _, s in v))}
              for name, v in cpu.items()}
    return {"events": events, "senders": senders, "integrations": INTEGRATIONS, "mean_body_bytes": round(mean_body),
            "outbox_rate": best["outbox"], "raw_rate": best["raw"], "urllib3_rate": best["urllib3"],
            "ratio": best["outbox"] / best["raw"], "ratio_to_urllib3": best["outbox"] / best["urllib3"],
            "single_integration_rate": single, "cpu": cpu_us, "samples": rates}


# -- #7 (child process) -------------------------------------------------------------------


def storm(*, events: int = 100_000, outbox_max: int = 10_000, integrations: int = 10) -> dict:
    import socket

    # A port nobody listens on: every post is refused (the backend is down).
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()
    changes = sample_changes()
    routes = [Route(integration_id=f"bench-{i}", tenant_id=f"tenant-{i % 3}", cluster="prod-eu", tags=("x",))
              for i in range(integrations)]
    client = BackendClient(base_url=f"http://127.0.0.1:{dead_port}/api", connect_timeout=1.0, read_timeout=1.0,
                           pool_size=10)
    metrics = Metrics()
    outbox = Outbox(poster=client, settings=Settings(senders=8, outbox_max=outbox_max), metrics=metrics)
    outbox.start()
    gevent.sleep(0.2)
    before = rss()
    peak = before
    mean_item = sum(len(to_outgoing(c, routes[0]).payload) for c in changes) / len(changes)
    started = time.perf_counter()
    for i in range(events):
        # The watch side: a fresh Outgoing per change, as the emit builds it.
        outbox.put(to_outgoing(changes[i % len(changes)], routes[i % integrations]))
        if i % 500 == 499:
            gevent.sleep(0)  # watch greenlets yield between chunks of a stream
            if i % 5000 == 4999:
                peak = max(peak, rss())
    put_seconds = time.perf_counter() - started
    gevent.sleep(1.0)  # senders keep failing against the dead backend meanwhile
    peak = max(peak, rss())
    dropped = _count(metrics.events_dropped, "reason", "overflow")
    retries = _count(metrics.events_posted, "result", "retry")
    depth = outbox.depth
    outbox.stop(0)
    client.close()
    bound = outbox_max * 6 * 1024  # stated bound: 6 KiB per queued event of ~1.6 KB JSON, plus slack below
    return {"events": events, "outbox_max": outbox_max, "integrations": integrations, "rss_before": before,
            "rss_peak": peak, "rss_growth": peak - before, "dropped": dropped, "depth_after": depth,
            "post_attempts_failed": retries, "put_rate": events / put_seconds,
            "mean_event_json_bytes": round(mean_item), "bound_growth": bound + 32 * 2**20}


if __name__ == "__main__":
    if sys.argv[1] == "storm":
        print(json.dumps(storm(events=int(sys.argv[2]), outbox_max=int(sys.argv[3]))))
