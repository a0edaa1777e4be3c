"""The whole connector in backend mode: fake PainChain backend <- connector <- real apiserver."""
import pytest

from painchain_connector.settings import Settings
from tests.e2e.helpers import LOOPBACK_ALLOWED, integration_doc, only
from tests.envtest.builders import make_service
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e


def settings_for(backend, **kw) -> Settings:
    base = dict(backend_url=backend.url, resync_interval=1.0, health_port=0, watch_timeout=30.0,
                drain_timeout=5.0, max_attempts=4, allowed_server_networks=LOOPBACK_ALLOWED)
    base.update(kw)
    return Settings(**base)


def add(backend, control_plane, namespace, *, id, tenant=None, resources=None, token=None):
    doc = integration_doc(id=id, tenant=tenant, server=control_plane.server, token=token or control_plane.admin_token,
                          ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=resources or only("services"))
    backend.add_integration(id, tenant_id=tenant, config=doc["config"])


def titles(backend, integration_id):
    return [e["title"] for e in backend.events_for(integration_id)]


def test_registers_then_posts_each_event_with_its_own_tenant_header(control_plane, kube, namespace, backend,
                                                                    connector_factory):
    add(backend, control_plane, namespace, id="acme", tenant="tenant-acme")
    add(backend, control_plane, namespace, id="globex", tenant="tenant-globex")
    add(backend, control_plane, namespace, id="selfhosted", tenant=None)
    connector = connector_factory(settings_for(backend))
    assert connector.ready.wait(timeout=30), connector.readiness()
    assert [r.json()["id"] for r in backend.received_at("/integrations/types/register")] == ["kubernetes"]
    kube.create("services", namespace, make_service("web"))
    for integ in ("acme", "globex", "selfhosted"):
        backend.wait_for(lambda i=integ: titles(backend, i) == ["Service Created: web"], timeout=20)
    posts = backend.received_at("/events", "POST")
    by_integration = {p.json()["integrationId"]: p.tenant for p in posts}
    assert by_integration == {"acme": "tenant-acme", "globex": "tenant-globex", "selfhosted": None}
    assert backend.tenant_mismatches() == []
    body = backend.events_for("acme")[0]
    assert body["project"] == f"envtest:{namespace}" and body["connector"] == "kubernetes"
    assert body["tags"] == ["e2e"] and body["externalId"]


def test_integrations_added_and_removed_on_the_backend_take_effect_without_restart(
        control_plane, kube, namespace, backend, connector_factory):
    connector = connector_factory(settings_for(backend))
    assert connector.ready.wait(timeout=30)
    assert connector.pool.running == {}
    add(backend, control_plane, namespace, id="late")
    wait_for(lambda: connector.pool.states() and set(connector.pool.states().values()) == {"watching"},
             timeout=20, message="the new integration's watch")
    kube.create("services", namespace, make_service("seen"))
    backend.wait_for(lambda: titles(backend, "late") == ["Service Created: seen"], timeout=20)
    backend.remove_integration("late")
    wait_for(lambda: connector.pool.running == {}, timeout=20, message="the removed integration's watch to stop")
    kube.create("services", namespace, make_service("unseen"))
    add(backend, control_plane, namespace, id="marker")  # a live watch proves "unseen" was not missed by delay
    wait_for(lambda: connector.pool.states() and set(connector.pool.states().values()) == {"watching"}, timeout=20)
    kube.create("services", namespace, make_service("after"))
    backend.wait_for(lambda: titles(backend, "marker") == ["Service Created: after"], timeout=20)
    assert titles(backend, "late") == ["Service Created: seen"]


def test_malformed_integration_is_rejected_while_the_others_run(control_plane, kube, namespace, backend,
                                                               connector_factory):
    backend.add_integration("broken", config={"name": "broken", "tags": [], "clusters": [{"name": "x"}]})
    add(backend, control_plane, namespace, id="fine")
    connector = connector_factory(settings_for(backend))
    assert connector.ready.wait(timeout=30)
    assert [r.integration_id for r in connector.last_fetch.rejected] == ["broken"]
    kube.create("services", namespace, make_service("ok"))
    backend.wait_for(lambda: titles(backend, "fine") == ["Service Created: ok"], timeout=20)


def test_backend_unreachable_at_resync_keeps_current_watches_running(control_plane, kube, namespace, backend,
                                                                     connector_factory):
    add(backend, control_plane, namespace, id="steady")
    connector = connector_factory(settings_for(backend))
    assert connector.ready.wait(timeout=30)
    backend.fail_with(500, path="/integrations")
    failed_before = connector.metrics.registry.get_sample_value("painchain_resync_seconds_count", {"outcome": "failed"}) or 0
    wait_for(lambda: (connector.metrics.registry.get_sample_value(
        "painchain_resync_seconds_count", {"outcome": "failed"}) or 0) > failed_before, timeout=10)
    assert set(connector.pool.states().values()) == {"watching"}
    kube.create("services", namespace, make_service("during-outage"))
    backend.wait_for(lambda: titles(backend, "steady") == ["Service Created: during-outage"], timeout=20)
