"""Issue 19 filters on the real apiserver: what a tenant leaves out produces nothing while
its neighbours do, and a filter changed on the backend applies at the next re-sync
without restarting unrelated watches. "Nothing" is proved by the marker technique
(scenarios.settled): one watch stream is ordered."""
import uuid

import pytest

from painchain_connector.running import Connector
from painchain_connector.settings import Settings
from painchain_connector.schemas.integration import parse_integration
from tests.e2e.helpers import LOOPBACK_ALLOWED, Collector, integration_doc, only, start_pool, wait_watching
from tests.e2e.scenarios import settled
from tests.envtest.builders import make_deployment, make_service
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e
IGNORE = {"painchain.io/ignore": "true"}


@pytest.fixture
def other_namespace(kube):
    name = f"t-other-{uuid.uuid4().hex[:8]}"
    kube.create("namespaces", None, {"metadata": {"name": name}})
    yield name
    kube.delete("namespaces", None, name, missing_ok=True)


def _pool(control_plane, *, namespaces=(), resources=("services",), **config):
    doc = integration_doc(server=control_plane.server, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                          namespaces=namespaces, resources=only(*resources))
    doc["config"].update(config)
    result = parse_integration(doc)
    assert result.integration is not None, result.errors
    collector = Collector()
    pool, _ = start_pool([result.integration], collector=collector)
    wait_watching(pool)
    return pool, collector


def test_an_excluded_namespace_reports_nothing_while_its_neighbour_does(control_plane, kube, namespace,
                                                                      other_namespace):
    pool, collector = _pool(control_plane, excludeNamespaces=f"{other_namespace[:12]}*")  # all namespaces, a pattern
    try:
        kube.create("services", other_namespace, make_service("hidden"))
        kube.create("services", namespace, make_service("shown"))
        assert settled(kube, namespace, collector, "services") == ["Service Created: shown"]
    finally:
        pool.stop_all()


def test_an_object_outside_the_label_selector_reports_nothing_and_leaving_it_is_no_deletion(
        control_plane, kube, namespace):
    pool, collector = _pool(control_plane, namespaces=[namespace], resources=("deployments",),
                            labelSelector="team in (shop),!canary")
    try:
        kube.create("deployments", namespace, make_deployment("other", labels={"app": "other", "team": "infra"}))
        kube.create("deployments", namespace, make_deployment("canary", labels={"app": "canary", "team": "shop",
                                                                                  "canary": "yes"}))
        kube.create("deployments", namespace, make_deployment("web", labels={"app": "web", "team": "shop"}))
        kube.create("deployments", namespace, make_deployment("api", labels={"app": "api", "team": "shop"}))
        kube.patch("deployments", namespace, "other", {"spec": {"replicas": 3}})
        kube.patch("deployments", namespace, "web", {"metadata": {"labels": {"team": "infra"}}})  # leaves the selection
        kube.delete("deployments", namespace, "api")  # really gone
        marker = make_deployment("marker", labels={"app": "marker", "team": "shop"})
        kube.create("deployments", namespace, marker)
        collector.wait_titles("Deployment Created: marker")
        assert collector.titles() == ["Deployment Created: web", "Deployment Created: api", "Deployment Deleted: api",
                                      "Deployment Created: marker"]
    finally:
        pool.stop_all()


def test_an_annotated_object_or_namespace_reports_nothing_while_its_neighbour_does(
        control_plane, kube, namespace, other_namespace):
    kube.patch("namespaces", None, other_namespace, {"metadata": {"annotations": IGNORE}})
    pool, collector = _pool(control_plane, namespaces=[namespace, other_namespace])
    try:
        notes = next(iter(pool.notes._entries.values()))[0]
        wait_for(lambda: other_namespace in notes.ignored_namespaces, timeout=20, message="the namespace watch")
        quiet = make_service("quiet")
        quiet["metadata"]["annotations"] = IGNORE
        kube.create("services", namespace, quiet)
        kube.create("services", other_namespace, make_service("in-quiet-namespace"))
        kube.create("services", namespace, make_service("loud"))
        kube.delete("services", namespace, "quiet")
        assert settled(kube, namespace, collector, "services") == ["Service Created: loud"]
        # the namespace opts back in: its next change is reported
        kube.patch("namespaces", None, other_namespace, {"metadata": {"annotations": {"painchain.io/ignore": None}}})
        wait_for(lambda: other_namespace not in notes.ignored_namespaces, timeout=20)
        kube.delete("services", other_namespace, "in-quiet-namespace")
        collector.wait_titles("Service Deleted: in-quiet-namespace")  # that stream is ordered: its creation was seen
        assert "Service Created: in-quiet-namespace" not in collector.titles()
    finally:
        pool.stop_all()


def test_filters_changed_on_the_backend_apply_at_the_next_resync_restarting_only_what_the_selector_changes(
        control_plane, kube, namespace, other_namespace, backend):
    def config(**extra):
        doc = integration_doc(server=control_plane.server, token=control_plane.admin_token,
                              ca_b64=control_plane.ca_b64, namespaces=[namespace, other_namespace],
                              resources=only("services", "events"))["config"]
        return {**doc, **extra}

    backend.add_integration("tenant-a", tenant_id="t-a", config=config())
    backend.add_integration("tenant-b", tenant_id="t-b", config=config())
    connector = Connector(Settings(backend_url=backend.url, resync_interval=0.5, health_port=0, watch_timeout=30,
                                   allowed_server_networks=LOOPBACK_ALLOWED)).start()
    titles = lambda i: [e["title"] for e in backend.events_for(i) if not e["data"].get("problem")]  # noqa: E731
    try:
        wait_for(lambda: len(connector.pool.running) == 8 and set(connector.pool.states().values()) == {"watching"},
                 timeout=30)
        reflectors = {k: r.reflector for k, r in connector.pool.running.items()}
        # excluding a namespace of A's list stops only that namespace's watches of A
        backend.integrations[0]["config"] = config(excludeNamespaces=other_namespace)
        wait_for(lambda: len(connector.pool.running) == 6, timeout=20)
        assert all(r.reflector is reflectors[k] for k, r in connector.pool.running.items())
        kube.create("services", other_namespace, make_service("only-b"))
        backend.wait_for(lambda: "Service Created: only-b" in titles("tenant-b"), timeout=20)
        # a label selector restarts A's services watch only, and applies at once
        backend.integrations[0]["config"] = config(excludeNamespaces=other_namespace, labelSelector="team=shop")
        wait_for(lambda: any(k.integration_id == "tenant-a" and r.spec.label_selector
                             for k, r in list(connector.pool.running.items())), timeout=20)
        wait_for(lambda: set(connector.pool.states().values()) == {"watching"}, timeout=20)
        restarted = {k for k, r in connector.pool.running.items() if r.reflector is not reflectors[k]}
        assert {(k.integration_id, k.resource) for k in restarted} == {("tenant-a", "services")}
        kube.create("services", namespace, make_service("unlabelled"))
        kube.create("services", namespace, make_service("labelled", labels={"app": "labelled", "team": "shop"}))
        backend.wait_for(lambda: "Service Created: labelled" in titles("tenant-a")
                         and "Service Created: labelled" in titles("tenant-b"), timeout=20)
        assert "Service Created: unlabelled" in titles("tenant-b")
        assert "Service Created: unlabelled" not in titles("tenant-a") and "Service Created: only-b" not in titles(
            "tenant-a")
    finally:
        connector.stop(timeout=2)


def test_without_list_namespaces_one_line_says_so_and_object_annotations_still_count(
        control_plane, kube, namespace, restricted_token):
    import io

    from painchain_connector.logs import configure_logging, reset_logging

    token = restricted_token(namespaces=[namespace], resources=["services"])
    sink = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", sink=sink)
    doc = integration_doc(server=control_plane.server, token=token, ca_b64=control_plane.ca_b64,
                          namespaces=[namespace], resources=only("services"))
    result = parse_integration(doc)
    collector = Collector()
    pool, _ = start_pool([result.integration], collector=collector)
    try:
        wait_watching(pool)
        wait_for(lambda: "cannot list namespaces" in sink.getvalue(), timeout=20, message="the one line")
        quiet = make_service("quiet")
        quiet["metadata"]["annotations"] = IGNORE
        kube.create("services", namespace, quiet)
        assert settled(kube, namespace, collector, "services") == []
    finally:
        pool.stop_all()
        reset_logging()
    lines = [line for line in sink.getvalue().splitlines() if "cannot list namespaces" in line]
    assert len(lines) == 1 and "painchain.io/ignore annotation is honoured on objects only" in lines[0]
