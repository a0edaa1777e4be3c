"""#3 end-to-end latency on a real kube-apiserver (tests/envtest ControlPlane).

The bench plays the kubelet: it bumps a pod's status.containerStatuses[0].restartCount
`rate` times a second (merge patch of /status) and notes when each write returns. A full
Connector (static integration source, BackendClient to an in-process FakeBackend) detects
each bump as a "Restarted" event; the fake backend stamps its arrival. Latency = arrival -
write return (both time.monotonic in this process, so it can be slightly negative).

Ceiling, same run: a raw watch (tests.envtest.kube.Kube.watch) of the same pod, stamped
when the apiserver's MODIFIED event for each bump is read: the apiserver's own delivery
latency, which no client can beat.
"""
from __future__ import annotations

import sys
import time
import uuid
from datetime import datetime, timezone

import gevent

from bench.common import percentile
from painchain_connector.backend import BackendClient
from painchain_connector.running import Connector
from painchain_connector.schemas.integration import parse_integration
from painchain_connector.settings import Settings
from painchain_connector.sources import Fetched

POD = "latency-probe"


class _StaticSource:
    def __init__(self, integration) -> None:
        self.integration = integration

    def fetch(self) -> Fetched:
        return Fetched(integrations=(self.integration,))


def _container_status(restarts: int) -> dict:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"name": "main", "image": "registry.example/app:1.0", "imageID": "", "ready": True,
            "restartCount": restarts, "started": True, "state": {"running": {"startedAt": now}}}


def _stamping_backend():
    from tests.fakebackend import FakeBackend

    class StampingBackend(FakeBackend):
        """Notes when each Restarted event arrives (before the fake's own bookkeeping)."""

        def __post_init__(self) -> None:
            super().__post_init__()
            self.arrivals: dict[int, float] = {}

        def _post_event(self, req):
            arrived = time.monotonic()
            try:
                doc = req.json()
                if doc.get("data", {}).get("changed", {}).get("restartCount"):
                    self.arrivals.setdefault(doc["data"]["changed"]["restartCount"]["new"], arrived)
            except (ValueError, AttributeError, KeyError, TypeError):
                pass
            return super()._post_event(req)

    return StampingBackend()


def bench_latency(*, rate: float = 10.0, seconds: float = 60.0) -> dict:
    from tests.envtest.builders import make_pod
    from tests.envtest.controlplane import ControlPlane
    from tests.envtest.kube import Kube

    plane = ControlPlane()
    started = time.perf_counter()
    plane.start(out=sys.stderr)
    startup = time.perf_counter() - started
    kube = Kube(server=plane.server, ca_file=plane.ca_file, token=plane.admin_token)
    fake = _stamping_backend().start()
    connector = None
    raw_watch = None
    try:
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        kube.create("namespaces", None, {"metadata": {"name": namespace}})
        kube.create("pods", namespace, make_pod(POD, namespace=namespace))
        pod = kube.patch_status("pods", namespace, POD, {"status": {"phase": "Running",
                                                                    "containerStatuses": [_container_status(0)]}})
        fake.add_integration("latency", config={"name": "latency", "tags": [], "clusters": []})
        parsed = parse_integration({"id": "latency", "tenantId": None, "config": {
            "name": "latency", "tags": ["bench"], "namespaces": [namespace],
            "resources": {"pods": True, "deployments": False, "services": False, "statefulsets": False,
                          "daemonsets": False, "events": False},
            "clusters": [{"name": "envtest", "server": plane.server, "token": plane.admin_token,
                          "certificate": plane.ca_b64}]}})
        settings = Settings(backend_url=fake.url, health_port=0, senders=8)
        poster = BackendClient(base_url=fake.url, connect_timeout=5.0, read_timeout=10.0, pool_size=10)
        connector = Connector(settings, source=_StaticSource(parsed.integration), poster=poster.post_event)
        connector.start()
        if not connector.ready.wait(60):
            raise RuntimeError("the connector did not become ready")

        seen_raw: dict[int, float] = {}
        stream = kube.watch("pods", namespace, resource_version=pod["metadata"]["resourceVersion"], read_timeout=None)

        def read_raw():
            for event in stream:
                statuses = (event.get("object") or {}).get("status", {}).get("containerStatuses") or []
                if event.get("type") == "MODIFIED" and statuses:
                    seen_raw.setdefault(statuses[0].get("restartCount"), time.monotonic())

        raw_watch = gevent.spawn(read_raw)
        gevent.sleep(1.0)
        written: dict[int, float] = {}
        write_seconds = []
        count = int(rate * seconds)
        t0 = time.monotonic()
        for k in range(1, count + 1):
            gevent.sleep(max(0.0, t0 + k / rate - time.monotonic()))
            w0 = time.monotonic()
            kube.patch_status("pods", namespace, POD, {"status": {"containerStatuses": [_container_status(k)]}})
            written[k] = time.monotonic()
            write_seconds.append(written[k] - w0)
        deadline = time.monotonic() + 15
        while (len(fake.arrivals) < count or len(seen_raw) < count) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        lat = [1000 * (fake.arrivals[k] - written[k]) for k in written if k in fake.arrivals]
        raw = [1000 * (seen_raw[k] - written[k]) for k in written if k in seen_raw]
        duplicates = len(fake.events) - len(fake.arrivals)
        return {
            "changes": count, "rate_per_s": rate, "arrived": len(lat), "raw_seen": len(raw),
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else None,
            "raw_p50_ms": percentile(raw, 50), "raw_p99_ms": percentile(raw, 99),
            "write_p50_ms": 1000 * percentile(write_seconds, 50), "events_stored": len(fake.events),
            "extra_events": duplicates, "control_plane_start_s": round(startup, 1),
        }
    finally:
        if raw_watch is not None:
            raw_watch.kill(block=False)
        if connector is not None:
            connector.stop(timeout=2)
        fake.stop()
        kube.close()
        plane.stop()
