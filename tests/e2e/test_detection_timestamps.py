"""When things happened, on the real apiserver: every timestamp lies between the change and
its observation; none at the object's creation, none at a relist.

Two traps (issue 13 point 4). The apiserver keeps a managedFields entry's time when the same
manager changes a field it already owns, so a scale or re-image by the tool that created the
object carries the creation time. And after a relist, "when the connector saw it" is the
relist's time. Object times have one-second resolution, so a change's lower bound is the
second it happened in, and each test first lets the clock leave the second of the previous
write (a wait on a condition, at most a second): otherwise a wrong, earlier stamp could not
be told from a right one.
"""
import time
from datetime import UTC, datetime

import pytest

from painchain_connector.metrics import Metrics
from tests.e2e.helpers import Collector, start_pool, wait_watching
from tests.e2e.scenarios import RUNNING, container, integration, set_pod, terminated, waiting
from tests.envtest.builders import make_deployment, make_pod
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e


def next_second(after: float) -> None:
    """Returns once the wall clock is in a later second than `after`."""
    wait_for(lambda: int(time.time()) > int(after), timeout=3, interval=0.02, message="the next second")


def rfc3339(stamp: float) -> str:
    return datetime.fromtimestamp(int(stamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def observe(collector, title, change):
    """Runs `change()`; returns (its second, the change emitted under `title`, when we had it)."""
    count = collector.titles().count(title)
    before = time.time()
    change()
    wait_for(lambda: collector.titles().count(title) > count, timeout=60, message=f"{title!r}; have {collector.titles()}")
    observed = time.time()
    found = [c for _, c in collector.items if c.title == title][count]
    return int(before), found, observed


def assert_between(found, second, observed):
    stamp = found.timestamp.timestamp()
    assert second <= stamp <= observed, (found.title, found.timestamp, rfc3339(second), observed)


def test_timestamps_lie_between_each_change_and_its_observation_live_and_after_a_relist(
        control_plane, kube, namespace, proxy, force_gone):
    collector, metrics = Collector(), Metrics()
    pool, _ = start_pool([integration(control_plane, namespace, "pods", "deployments", server=proxy.url)],
                         collector=collector, metrics=metrics)
    try:
        wait_watching(pool)
        created = time.time()
        kube.create("deployments", namespace, make_deployment("web", replicas=1))
        kube.create("pods", namespace, make_pod("crashy"))
        set_pod(kube, namespace, "crashy", container(RUNNING, ready=True))
        collector.wait_titles("Deployment Created: web", "Pod Created: crashy")
        # live: the same manager (this client) scales and re-images what it created
        next_second(time.time())
        scale = observe(collector, "Deployment Scaled: web (1 → 2)",
                        lambda: kube.patch("deployments", namespace, "web", {"spec": {"replicas": 2}}))
        image = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "registry.example/app:1.1"}]}}}}
        update = observe(collector, "Deployment Updated: web: containers[main].image registry.example/app:1.0 → "
                         "registry.example/app:1.1",
                         lambda: kube.patch("deployments", namespace, "web", image))
        next_second(update[2])
        crash = observe(collector, "Pod CrashLoopBackOff: crashy", lambda: set_pod(
            kube, namespace, "crashy", container(waiting("CrashLoopBackOff"), restarts=1, last=terminated(
                1, "Error", cid="containerd://aaaaaaaaaaaa", finished=rfc3339(time.time())))))
        for second, found, observed in (scale, update, crash):
            assert_between(found, second, observed)
            assert found.timestamp.timestamp() >= int(created) + 1  # not the creation second
        assert crash[1].timestamp.timestamp() == crash[0]  # the pod's own time: lastState finishedAt

        # a second round the watch misses: the stream is cut, the changes happen, a 410 forces a relist
        proxy.refuse()
        proxy.cut_all()
        next_second(crash[2])
        missed = int(time.time())
        kube.patch("deployments", namespace, "web", {"spec": {"replicas": 3}})
        set_pod(kube, namespace, "crashy", container(RUNNING, restarts=2, last=terminated(
            1, "Error", cid="containerd://bbbbbbbbbbbb", finished=rfc3339(time.time()))))
        done = time.time()
        force_gone("pods", namespace)  # compacts etcd: the deployments watch's resourceVersion is gone too
        relisted = time.time()
        proxy.resume()
        collector.wait_titles("Deployment Scaled: web (2 → 3)", "Pod Container Terminated: crashy (main: exit 1, Error)",
                              timeout=60)
        observed = time.time()
        for resource in ("pods", "deployments"):  # both came back through a relist, not a resumed watch
            assert metrics.registry.get_sample_value(
                "painchain_watch_restarts_total", {"resource": resource, "reason": "gone"}) >= 1
        rescaled = [c for _, c in collector.items if c.title == "Deployment Scaled: web (2 → 3)"][0]
        recrashed = [c for _, c in collector.items if c.title.startswith("Pod Container Terminated: crashy")][0]
        assert_between(rescaled, missed, observed)  # no object time moved: the observation, an upper bound
        assert_between(recrashed, missed, done)  # the pod's own time, well before the relist
        assert recrashed.timestamp.timestamp() < relisted
        assert recrashed.data["facts"] == ["Terminated", "Restarted"]
    finally:
        proxy.resume()
        pool.stop_all()
