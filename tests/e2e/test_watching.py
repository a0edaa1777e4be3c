"""The watch engine against the real kube-apiserver, through the fault-injecting proxy."""
import pytest

from painchain_connector.metrics import Metrics
from painchain_connector.orchestration import wanted_watches
from tests.e2e.helpers import Collector, fast_timing, make_integration, only, start_pool, wait_watching
from tests.envtest.builders import make_pod, make_service
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e


def _restarts(metrics: Metrics, resource: str, reason: str) -> float:
    return metrics.registry.get_sample_value(
        "painchain_watch_restarts_total", {"resource": resource, "reason": reason}) or 0.0


def test_initial_list_is_a_baseline_and_only_later_changes_are_emitted(control_plane, kube, namespace):
    for i in range(5):  # more than one page (page size 2)
        kube.create("services", namespace, make_service(f"old-{i}"))
    collector = Collector()
    integ = make_integration(server=control_plane.server, token=control_plane.admin_token,
                             ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("services"))
    pool, counts = start_pool([integ], collector=collector)
    try:
        assert counts["started"] == 1
        wait_watching(pool)
        kube.create("services", namespace, make_service("new"))
        collector.wait_titles("Service Created: new")
        assert collector.titles() == ["Service Created: new"]
    finally:
        pool.stop_all()


def test_watch_resumes_after_cut_without_duplicates_or_gaps(control_plane, kube, namespace, proxy):
    collector, metrics = Collector(), Metrics()
    integ = make_integration(server=proxy.url, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                             namespaces=[namespace], resources=only("services"))
    pool, _ = start_pool([integ], collector=collector, metrics=metrics)
    try:
        wait_watching(pool)
        kube.create("services", namespace, make_service("a"))
        collector.wait_titles("Service Created: a")
        accepted = proxy.accepted
        assert proxy.cut_all() >= 1
        kube.create("services", namespace, make_service("b"))  # while the stream is down
        wait_for(lambda: proxy.accepted > accepted, timeout=20, message="the watch to reconnect")
        kube.delete("services", namespace, "a")
        collector.wait_titles("Service Created: b", "Service Deleted: a")
        assert sorted(collector.titles()) == ["Service Created: a", "Service Created: b", "Service Deleted: a"]
        assert _restarts(metrics, "services", "cut") >= 1
        assert _restarts(metrics, "services", "gone") == 0  # resumed from its resourceVersion, no relist
    finally:
        pool.stop_all()


def test_relist_after_410_emits_missed_create_update_and_delete_once(control_plane, kube, namespace, proxy, force_gone):
    collector, metrics = Collector(), Metrics()
    kube.create("services", namespace, make_service("doomed"))
    kube.create("pods", namespace, make_pod("p"))
    integ = make_integration(server=proxy.url, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                             namespaces=[namespace], resources=only("services", "pods"))
    pool, _ = start_pool([integ], collector=collector, metrics=metrics)
    try:
        wait_watching(pool)
        proxy.refuse()  # new connections are closed at once; then cut the open ones
        proxy.cut_all()
        kube.create("services", namespace, make_service("missed"))
        kube.delete("services", namespace, "doomed")
        kube.patch_status("pods", namespace, "p", {"status": {"phase": "Running"}})  # Pending -> Running
        force_gone("services", namespace)
        proxy.resume()
        collector.wait_titles("Service Created: missed", "Service Deleted: doomed", "Pod Created: p", timeout=60)
        wait_watching(pool, timeout=30)
        assert sorted(collector.titles()) == ["Pod Created: p", "Service Created: missed", "Service Deleted: doomed"]
        assert len(set(collector.external_ids())) == 3
        assert _restarts(metrics, "services", "gone") + _restarts(metrics, "pods", "gone") >= 1
    finally:
        proxy.resume()
        pool.stop_all()


def test_stalled_watch_is_detected_and_recovered(control_plane, kube, namespace, proxy):
    collector, metrics = Collector(), Metrics()
    integ = make_integration(server=proxy.url, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                             namespaces=[namespace], resources=only("services"))
    pool, _ = start_pool([integ], collector=collector, metrics=metrics,
                         timing=fast_timing(watch_timeout=4.0, stall_margin=2.0))
    try:
        wait_watching(pool)
        proxy.stall()
        kube.create("services", namespace, make_service("during-stall"))
        wait_for(lambda: _restarts(metrics, "services", "stall") >= 1, timeout=20, message="a stall to be detected")
        proxy.unstall()
        proxy.cut_all()  # the stalled sockets are dead to the client already; clear them
        collector.wait_titles("Service Created: during-stall", timeout=30)
        assert collector.titles().count("Service Created: during-stall") == 1
    finally:
        proxy.unstall()
        pool.stop_all()


def test_restarted_connector_emits_nothing_for_unchanged_objects(control_plane, kube, namespace):
    kube.create("services", namespace, make_service("steady"))
    kube.create("pods", namespace, make_pod("steady"))
    integ = make_integration(server=control_plane.server, token=control_plane.admin_token,
                             ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("services", "pods"))
    for run in range(2):  # start, stop, start again
        collector = Collector()
        pool, _ = start_pool([integ], collector=collector)
        try:
            wait_watching(pool)
            # a marker proves the watch is live; nothing but the marker may be emitted
            kube.create("services", namespace, make_service(f"marker-{run}"))
            collector.wait_titles(f"Service Created: marker-{run}")
            assert collector.titles() == [f"Service Created: marker-{run}"]
        finally:
            pool.stop_all()


def test_token_rotation_restarts_only_that_integrations_watches(control_plane, kube, namespace, restricted_token):
    rotated = restricted_token(namespaces=[namespace], resources=["services", "pods"])
    a = make_integration(id="a", server=control_plane.server, token=control_plane.admin_token,
                         ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("services", "pods"))
    b = make_integration(id="b", server=control_plane.server, token=control_plane.admin_token,
                         ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("services"))
    collector = Collector()
    pool, _ = start_pool([a, b], collector=collector)
    try:
        wait_watching(pool)
        before = {k: r.greenlet for k, r in pool.running.items()}
        a2 = make_integration(id="a", server=control_plane.server, token=rotated, ca_b64=control_plane.ca_b64,
                              namespaces=[namespace], resources=only("services", "pods"))
        counts = pool.adjust(wanted_watches([a2, b]))
        assert counts == {"stopped": 0, "restarted": 2, "started": 0, "unchanged": 1, "failed": 0}
        assert all(pool.running[k].greenlet is g for k, g in before.items() if k.integration_id == "b")
        wait_watching(pool)
        kube.create("services", namespace, make_service("after-rotation"))
        wait_for(lambda: collector.titles().count("Service Created: after-rotation") == 2, timeout=20,
                 message="both integrations to see the new service")
        # narrowing resources and namespaces stops exactly the watches no longer wanted
        a3 = make_integration(id="a", server=control_plane.server, token=rotated, ca_b64=control_plane.ca_b64,
                              namespaces=[namespace], resources=only("pods"))
        assert pool.adjust(wanted_watches([a3, b]))["stopped"] == 1
        assert sorted(k.resource for k in pool.running) == ["pods", "services"]
    finally:
        pool.stop_all()


def test_namespace_scoped_token_watches_every_listed_namespace(control_plane, kube, namespace, restricted_token):
    second = f"{namespace}-b"
    kube.create("namespaces", None, {"metadata": {"name": second}})
    token = restricted_token(namespaces=[namespace, second], resources=["services", "pods"])
    integ = make_integration(server=control_plane.server, token=token, ca_b64=control_plane.ca_b64,
                             namespaces=[namespace, second], resources=only("services", "pods"))
    collector = Collector()
    pool, counts = start_pool([integ], collector=collector)
    try:
        assert counts["started"] == 4
        wait_watching(pool)
        kube.create("services", namespace, make_service("one"))
        kube.create("services", second, make_service("two"))
        collector.wait_titles("Service Created: one", "Service Created: two")
        projects = {(c.namespace, c.title) for _, c in collector.items}
        assert projects == {(namespace, "Service Created: one"), (second, "Service Created: two")}
    finally:
        pool.stop_all()


def test_forbidden_resource_disables_only_that_watch(control_plane, kube, namespace, restricted_token):
    token = restricted_token(namespaces=[namespace], resources=["services"])
    integ = make_integration(server=control_plane.server, token=token, ca_b64=control_plane.ca_b64,
                             namespaces=[namespace], resources=only("services", "deployments"))
    collector, metrics = Collector(), Metrics()
    pool, _ = start_pool([integ], collector=collector, metrics=metrics)
    try:
        wait_watching(pool, states=("watching", "forbidden"))
        states = {k.split("/")[2]: s for k, s in pool.states().items()}
        assert states == {"services": "watching", "deployments": "forbidden"}
        assert "deployments" in pool.running[next(k for k in pool.running if k.resource == "deployments")].reflector.last_error
        kube.create("services", namespace, make_service("still-flowing"))
        collector.wait_titles("Service Created: still-flowing")
        wait_for(lambda: _restarts(metrics, "deployments", "forbidden") >= 2, timeout=20,
                 message="the forbidden watch to be retried")
    finally:
        pool.stop_all()


def test_wrong_token_marks_watches_unauthorized_and_others_keep_running(control_plane, kube, namespace):
    good = make_integration(id="good", server=control_plane.server, token=control_plane.admin_token,
                            ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("services"))
    bad = make_integration(id="bad", server=control_plane.server, token="not-a-valid-token-123456",
                           ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("services"))
    collector = Collector()
    pool, _ = start_pool([good, bad], collector=collector)
    try:
        wait_watching(pool, states=("watching", "unauthorized"))
        assert sorted(pool.states().values()) == ["unauthorized", "watching"]
        kube.create("services", namespace, make_service("ok"))
        collector.wait_titles("Service Created: ok")
        assert {r.integration_id for r, _ in collector.items} == {"good"}
    finally:
        pool.stop_all()
