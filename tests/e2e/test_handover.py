"""A restarted watch inherits what the stopped one knew, and never shares it with a
greenlet that outlived its kill (issue 13 point 5)."""
import gevent
import pytest
from gevent import GreenletExit

from painchain_connector.metrics import Metrics
from painchain_connector.orchestration import WatchPool, wanted_watches
from tests.e2e.helpers import fast_timing, make_integration, only, wait_watching
from tests.envtest.builders import make_service
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e


class StubbornEmit:
    """An emit that ignores kills while `hold` is set: a watch greenlet that outlives its kill."""

    def __init__(self) -> None:
        self.hold, self.blocked, self.items = True, False, []

    def make(self, _route):
        def emit(changes):
            self.items.extend(changes)
            while self.hold:
                self.blocked = True
                try:
                    gevent.sleep(0.05)
                except GreenletExit:
                    continue
            self.blocked = False
        return emit


def test_restart_while_the_old_watch_outlives_its_kill_gives_the_new_one_its_own_store(
        control_plane, kube, namespace):
    kube.create("services", namespace, make_service("known"))
    stubborn = StubbornEmit()
    integ = dict(server=control_plane.server, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                 namespaces=[namespace], resources=only("services"))
    pool = WatchPool(make_emit=stubborn.make, timing=fast_timing(), metrics=Metrics(), connect_timeout=5.0,
                     stop_timeout=0.5)
    old = None
    try:
        pool.adjust(wanted_watches([make_integration(tags=("before",), **integ)]))
        wait_watching(pool)
        (key, running), = pool.running.items()
        old = running
        kube.create("services", namespace, make_service("new"))
        wait_for(lambda: stubborn.blocked, timeout=20, message="the watch to block in emit")
        counts = pool.adjust(wanted_watches([make_integration(tags=("after",), **integ)]))  # new tags: restart
        assert counts["restarted"] == 1
        assert not old.greenlet.dead, "the old greenlet should have outlived its kill"
        new = pool.running[key].reflector
        assert new.store is not old.reflector.store and new.store.objects is not old.reflector.store.objects
        assert new.store.objects == old.reflector.store.objects  # it still starts from what was known
        assert new.resource_version == old.reflector.resource_version
        old.reflector.store.objects.clear()  # whatever the zombie does to its Store stays its own
        assert len(new.store.objects) == 2
    finally:
        stubborn.hold = False
        if old is not None:
            old.greenlet.kill(block=True, timeout=5)
        pool.stop_all()


def test_restart_after_a_clean_stop_hands_over_the_same_store_without_a_baseline(control_plane, kube, namespace):
    kube.create("services", namespace, make_service("known"))
    emitted = []
    integ = dict(server=control_plane.server, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                 namespaces=[namespace], resources=only("services"))
    pool = WatchPool(make_emit=lambda _r: emitted.extend, timing=fast_timing(), metrics=Metrics(), connect_timeout=5.0)
    try:
        pool.adjust(wanted_watches([make_integration(tags=("before",), **integ)]))
        wait_watching(pool)
        (key, running), = pool.running.items()
        store = running.reflector.store
        pool.adjust(wanted_watches([make_integration(tags=("after",), **integ)]))
        assert running.greenlet.dead and pool.running[key].reflector.store is store
        wait_watching(pool)
        kube.create("services", namespace, make_service("later"))
        wait_for(lambda: [c.title for c in emitted] == ["Service Created: later"], timeout=20,
                 message=f"only the later service; have {[c.title for c in emitted]}")
    finally:
        pool.stop_all()
