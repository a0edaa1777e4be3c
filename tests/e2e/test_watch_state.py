"""Persisted watch state across a restart of the watch engine (STATE_DIR)."""
import pickle

import pytest

from painchain_connector import persisting
from painchain_connector.delivering.spool import Spool
from painchain_connector.metrics import Metrics
from painchain_connector.orchestration import WatchPool, state_key, wanted_watches
from tests.e2e.helpers import Collector, fast_timing, make_integration, only, wait_watching
from tests.envtest.builders import make_service

pytestmark = pytest.mark.e2e


def _pool(spool, collector):
    return WatchPool(make_emit=collector.make_emit, timing=fast_timing(), metrics=Metrics(), connect_timeout=5.0,
                     state_store=spool, flush_interval=3600)


def _services_watch(control_plane, namespace):
    """(wanted watches, the one spec) of an integration watching services in `namespace`."""
    integ = make_integration(server=control_plane.server, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                             namespaces=[namespace], resources=only("services"))
    wanted = wanted_watches([integ])
    return wanted, next(iter(wanted.values()))


def test_state_written_by_the_previous_format_version_is_diffed_after_a_restart(control_plane, kube, namespace,
                                                                                 tmp_path):
    kube.create("services", namespace, make_service("kept"))
    kube.create("services", namespace, make_service("doomed"))
    wanted, spec = _services_watch(control_plane, namespace)
    with Spool(tmp_path / "state.sqlite3") as spool:
        pool = _pool(spool, Collector())
        pool.adjust(wanted)
        wait_watching(pool)
        assert pool.flush_state() == 1
        pool.stop_all()
        # rewrite it as the previous version did: a bare pickle of the Store's objects
        rv, blob = spool.load_watch_state(state_key(spec))
        spool.save_watch_state(state_key(spec), rv, pickle.dumps(persisting.decode(blob)))

        kube.delete("services", namespace, "doomed")  # while the connector is down
        kube.create("services", namespace, make_service("born"))

        collector = Collector()
        pool = _pool(spool, collector)
        try:
            pool.adjust(wanted)
            collector.wait_titles("Service Deleted: doomed", "Service Created: born", timeout=30)
            assert sorted(collector.titles()) == ["Service Created: born", "Service Deleted: doomed"]
        finally:
            pool.stop_all()


def test_an_unusable_state_starts_a_clean_baseline(control_plane, kube, namespace, tmp_path):
    kube.create("services", namespace, make_service("old"))
    wanted, spec = _services_watch(control_plane, namespace)
    with Spool(tmp_path / "state.sqlite3") as spool:
        spool.save_watch_state(state_key(spec), "1", persisting.MAGIC + b'{"format": 99}\n')
        collector = Collector()
        pool = _pool(spool, collector)
        pool.adjust(wanted)
        try:
            wait_watching(pool)
            kube.create("services", namespace, make_service("marker"))
            # "old" was there before: with the state discarded it is a baseline, not "created"
            assert collector.wait_titles("Service Created: marker") == ["Service Created: marker"]
        finally:
            pool.stop_all()
