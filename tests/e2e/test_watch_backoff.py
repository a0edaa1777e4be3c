"""When a Reflector backs off, and when it forgets past failures (issue 13 points 1 and 2).

The Reflector is driven one iteration at a time (`run_once`), with an injected clock and
a sleep that records the delay it was asked for, so a test can tell "0.8 s" from "30 s"
without waiting for either."""
import gevent
import pytest

from painchain_connector.clusters import ListerWatcher, build_api_client
from painchain_connector.metrics import Metrics
from painchain_connector.model import WatchKey
from painchain_connector.resources import RESOURCE_TYPES
from painchain_connector.schemas.integration import Cluster
from painchain_connector.watching import Reflector
from tests.e2e.helpers import fast_timing
from tests.envtest.builders import make_service
from tests.envtest.fakeapi import FakeApiServer
from tests.envtest.fixtures import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Ceiling:
    """An rng that always draws the top of the jitter range: delays are the ceilings."""

    @staticmethod
    def random() -> float:
        return 1.0


def reflector(server: str, token: str, ca_b64: str | None, namespace: str, *, clock, sleeps, emitted=None):
    api = build_api_client(Cluster(name="c", server=server, token=token, certificate=ca_b64), connect_timeout=5)
    lw = ListerWatcher(api, path=RESOURCE_TYPES["services"].path(namespace), connect_timeout=5)
    emitted = [] if emitted is None else emitted
    return Reflector(key=WatchKey("i", "c", "services", namespace), lister_watcher=lw, emit=emitted.extend,
                     timing=fast_timing(watch_timeout=60.0), metrics=Metrics(), sleep=sleeps.append,
                     clock=clock, rng=Ceiling())


def _outage_then_open_watch(r, proxy, sleeps):
    proxy.refuse()
    for _ in range(6):
        r.run_once()
    assert sleeps == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6]
    proxy.resume()
    running = gevent.spawn(r.run_once)
    wait_for(lambda: r.state == "watching", timeout=20, message="the watch to open again")
    return running


@pytest.mark.e2e
def test_a_cut_five_minutes_into_a_healthy_watch_waits_the_first_delay_not_30s(control_plane, namespace, proxy):
    clock, sleeps = Clock(), []
    r = reflector(proxy.url, control_plane.admin_token, control_plane.ca_b64, namespace, clock=clock, sleeps=sleeps)
    running = _outage_then_open_watch(r, proxy, sleeps)
    try:
        clock.now += 300  # five healthy minutes
        proxy.cut_all()
        running.join(timeout=20)
        assert running.dead and r.state == "backoff"
        assert sleeps[-1] == 0.8
    finally:
        running.kill()


@pytest.mark.e2e
def test_a_cut_right_after_a_delivered_change_waits_the_first_delay(control_plane, kube, namespace, proxy):
    clock, sleeps, emitted = Clock(), [], []
    r = reflector(proxy.url, control_plane.admin_token, control_plane.ca_b64, namespace, clock=clock, sleeps=sleeps,
                  emitted=emitted)
    running = _outage_then_open_watch(r, proxy, sleeps)
    try:
        kube.create("services", namespace, make_service("proof-of-life"))
        wait_for(lambda: emitted, timeout=20, message="the change to be delivered")
        proxy.cut_all()
        running.join(timeout=20)
        assert running.dead and sleeps[-1] == 0.8
    finally:
        running.kill()


def test_a_watch_that_sends_one_bookmark_and_closes_backs_off_instead_of_reconnecting_at_once():
    with FakeApiServer() as fake:
        fake.watching = "bookmark-then-close"
        clock, sleeps = Clock(), []
        r = reflector(fake.url, "token-123", None, "default", clock=clock, sleeps=sleeps)
        for _ in range(4):
            r.run_once()
        assert fake.count(watch=True) == 4
        assert sleeps == [0.8, 1.6, 3.2, 6.4]


def test_an_interrupted_watch_fails_as_a_stall_and_resumes_after_the_backoff():
    with FakeApiServer() as fake:
        clock, sleeps = Clock(), []
        r = reflector(fake.url, "token-123", None, "default", clock=clock, sleeps=sleeps)
        running = gevent.spawn(r.run_once)
        try:
            wait_for(lambda: r.state == "watching", timeout=10, message="the watch to open")
            assert r.interrupt("stalled: a probe saw changes") is True
            running.join(timeout=10)
            assert running.dead and running.exception is None
            assert (r.state, r.last_error, sleeps) == ("backoff", "stalled: a probe saw changes", [0.8])
            assert r.resource_version == "100"  # resumes from where it was: no relist
        finally:
            running.kill()
