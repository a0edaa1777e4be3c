"""A tenant's "apiserver" is a stranger: bounded reads keep its answers from costing
everyone else memory (issue 11 point 3). One integration points at the tests' own hostile
fake apiserver, another at the real one; the hostile cluster must show an error in its
watch state, the connector's memory must stay bounded, and the other tenant's events
must keep flowing."""
import resource

import pytest

from painchain_connector.clusters import ReadLimits
from painchain_connector.metrics import Metrics
from painchain_connector.orchestration import WatchPool, wanted_watches
from tests.e2e.helpers import Collector, fast_timing, make_integration, only, wait_watching
from tests.envtest.builders import make_service
from tests.envtest.fakeapi import FakeApiServer

pytestmark = pytest.mark.e2e

MiB = 2**20
LIMITS = ReadLimits(max_list_page_bytes=1 * MiB, max_watch_line_bytes=256 * 1024, max_list_objects=1_000,
                    max_list_pages=50)
HOSTILE_TOKEN = "hostile-tenant-token-0123456789"


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


@pytest.mark.parametrize("listing, watching, bound", [
    ("endless", "quiet", "MAX_LIST_PAGE_BYTES"),
    ("huge-object", "quiet", "MAX_LIST_PAGE_BYTES"),
    ("endless-continue", "quiet", "MAX_LIST_PAGES"),
    ("many-objects", "quiet", "MAX_LIST_OBJECTS"),
    ("empty", "endless-line", "MAX_WATCH_LINE_BYTES"),
])
def test_hostile_apiserver_is_reported_failing_with_bounded_memory_while_others_flow(
        control_plane, kube, namespace, listing, watching, bound):
    fake = FakeApiServer().start()
    fake.listing, fake.watching = listing, watching
    hostile = make_integration(id="hostile", server=fake.url, token=HOSTILE_TOKEN, ca_b64=None,
                               namespaces=["default"], resources=only("pods"))
    good = make_integration(id="good", server=control_plane.server, token=control_plane.admin_token,
                            ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("services"))
    collector = Collector()
    pool = WatchPool(make_emit=collector.make_emit, timing=fast_timing(forbidden_retry=30.0), metrics=Metrics(),
                     connect_timeout=5.0, limits=LIMITS)
    peak_before = _peak_rss()
    try:
        pool.adjust(wanted_watches([hostile, good]))
        wait_watching(pool, states=("watching", "oversized"), timeout=30)
        states = {k.integration_id: r.reflector for k, r in pool.running.items()}
        assert states["hostile"].state == "oversized" and states["good"].state == "watching"
        assert bound in states["hostile"].last_error and HOSTILE_TOKEN not in states["hostile"].last_error
        assert "hostile/envtest/pods/default" in pool.states() and pool.states()["hostile/envtest/pods/default"] == "oversized"
        kube.create("services", namespace, make_service("still-flowing"))
        collector.wait_titles("Service Created: still-flowing")
        assert {route.integration_id for route, _ in collector.items} == {"good"}
        # what one request may cost is bounded by the limits (with a few MiB of socket buffers)
        assert _peak_rss() - peak_before < 64 * MiB, f"peak RSS grew by {(_peak_rss() - peak_before) / MiB:.0f} MiB"
    finally:
        pool.stop_all()
        fake.stop()
