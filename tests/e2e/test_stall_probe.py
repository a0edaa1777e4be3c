"""The stall probe tells a quiet watch from a stalled one (issue 13 point 3), on the real
apiserver behind the FaultyProxy. The watch timeout is long (300 s + 30 s margin), so
the read timeout cannot be what notices within these tests' deadlines."""
import time

import pytest

from painchain_connector.metrics import Metrics
from painchain_connector.orchestration import WatchPool, wanted_watches
from painchain_connector.probing import ProbeSettings
from tests.e2e.helpers import Collector, fast_timing, make_integration, only, wait_watching
from tests.envtest.builders import make_service
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e

PROBE = ProbeSettings(interval=2.0, rate=20.0, timeout=3.0)


def _sample(metrics: Metrics, name: str, labels: dict) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _pool(control_plane, proxy, namespace, collector, metrics, probe=PROBE):
    integ = make_integration(server=proxy.url, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                             namespaces=[namespace], resources=only("services"))
    pool = WatchPool(make_emit=collector.make_emit, metrics=metrics, connect_timeout=3.0, probe=probe,
                     timing=fast_timing(watch_timeout=300.0, stall_margin=30.0))
    pool.adjust(wanted_watches([integ]))
    wait_watching(pool)
    return pool


def test_changes_made_while_the_watch_stream_is_held_arrive_within_seconds(control_plane, kube, namespace, proxy):
    collector, metrics = Collector(), Metrics()
    pool = _pool(control_plane, proxy, namespace, collector, metrics)
    try:
        wait_for(lambda: _sample(metrics, "painchain_stall_probes_total", {"outcome": "quiet"}) >= 1, timeout=20,
                 message="a first probe of the quiet watch")
        assert proxy.hold_open() >= 1  # the watch's connection: open, silent; new ones still flow
        started = time.monotonic()
        names = [f"held-{i}" for i in range(8)]
        for name in names:
            kube.create("services", namespace, make_service(name))
        collector.wait_titles(*[f"Service Created: {n}" for n in names], timeout=30)
        elapsed = time.monotonic() - started
        assert elapsed < 3 * PROBE.interval + PROBE.timeout + 5, f"took {elapsed:.1f}s"
        assert sorted(collector.titles()) == sorted(f"Service Created: {n}" for n in names)  # each once
        # "stalled" (a fresh connection saw the changes) or "path_stalled" (the probe took a
        # kept-alive connection that is held too): either way the quiet watch reconnects
        assert sum(_sample(metrics, "painchain_stall_probes_total", {"outcome": o})
                   for o in ("stalled", "path_stalled")) >= 1
        assert _sample(metrics, "painchain_watch_restarts_total", {"resource": "services", "reason": "stall"}) >= 1
    finally:
        proxy.release()
        pool.stop_all()


def test_a_quiet_watch_is_probed_and_left_alone(control_plane, kube, namespace, proxy):
    collector, metrics = Collector(), Metrics()
    pool = _pool(control_plane, proxy, namespace, collector, metrics)
    try:
        (running,) = pool.running.values()
        wait_for(lambda: _sample(metrics, "painchain_stall_probes_total", {"outcome": "quiet"}) >= 3, timeout=30,
                 message="three probes of the quiet watch")
        assert _sample(metrics, "painchain_watch_restarts_total", {"resource": "services", "reason": "stall"}) == 0
        assert running.reflector.state == "watching" and running.reflector.backoff.failures == 0
        kube.create("services", namespace, make_service("after-probes"))
        collector.wait_titles("Service Created: after-probes")
    finally:
        pool.stop_all()


def test_a_path_that_holds_every_connection_shows_the_cluster_unreachable_then_recovers(
        control_plane, kube, namespace, proxy):
    collector, metrics = Collector(), Metrics()
    pool = _pool(control_plane, proxy, namespace, collector, metrics)
    try:
        wait_for(lambda: _sample(metrics, "painchain_stall_probes_total", {"outcome": "quiet"}) >= 1, timeout=20,
                 message="a first probe of the quiet watch")
        proxy.stall()  # every socket, new ones included: the probe itself hangs
        started = time.monotonic()
        wait_for(lambda: list(pool.states().values()) != ["watching"], timeout=30,
                 message="the held watch to be noticed")
        noticed = time.monotonic() - started
        assert noticed < 2 * PROBE.interval + PROBE.timeout + 5, f"took {noticed:.1f}s"
        assert _sample(metrics, "painchain_stall_probes_total", {"outcome": "path_stalled"}) >= 1
        kube.create("services", namespace, make_service("after-the-stall"))
        proxy.unstall()
        collector.wait_titles("Service Created: after-the-stall", timeout=60)
    finally:
        proxy.unstall()
        pool.stop_all()
