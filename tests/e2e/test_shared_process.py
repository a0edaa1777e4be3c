"""One connector, many tenants, on the real apiserver and the fake backend: no tenant and no
bad backend answer can hurt the others or lose data (issue #11), and tenants see their
integration's health in PainChain (issues #11 and #12)."""
import time

import gevent
import pytest

from painchain_connector.settings import Settings
from tests.e2e.helpers import LOOPBACK_ALLOWED, integration_doc, only
from tests.envtest.builders import make_service
from tests.envtest.fixtures import wait_for
from tests.envtest.proxy import FaultyProxy

pytestmark = pytest.mark.e2e


def settings_for(backend, **kw) -> Settings:
    base = dict(backend_url=backend.url, resync_interval=1.0, health_port=0, watch_timeout=30.0,
                drain_timeout=5.0, allowed_server_networks=LOOPBACK_ALLOWED)
    base.update(kw)
    return Settings(**base)


def add(backend, control_plane, namespace, *, id, tenant="t-1", server=None, resources=None, **doc_kw):
    doc = integration_doc(id=id, tenant=tenant, server=server or control_plane.server,
                          token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                          namespaces=doc_kw.pop("namespaces", [namespace]), resources=resources or only("services"),
                          **doc_kw)
    return backend.add_integration(id, tenant_id=tenant, config=doc["config"])


def titles(backend, integration_id):
    return [e["title"] for e in backend.events_for(integration_id)]


def fetches(backend) -> int:
    return len(backend.received_at("/integrations", "GET"))


def wait_fetches(backend, n: int, timeout: float = 20) -> None:
    target = fetches(backend) + n
    wait_for(lambda: fetches(backend) >= target, timeout=timeout, message=f"{n} more re-syncs")


def watching(connector, n: int):
    return lambda: len(connector.pool.states()) == n and set(connector.pool.states().values()) == {"watching"}


def test_an_empty_list_then_the_full_list_loses_no_queued_event_no_state_and_no_change(
        control_plane, kube, namespace, backend, connector_factory):
    for i in range(3):
        add(backend, control_plane, namespace, id=f"shop-{i}", tenant=f"t-{i}")
    connector = connector_factory(settings_for(backend, shrink_confirmations=3))
    wait_for(watching(connector, 3), timeout=30)
    greenlets = {k: r.greenlet for k, r in connector.pool.running.items()}
    full = list(backend.integrations)

    backend.fail_with(503, path="/events")  # keep this change queued in the outbox
    kube.create("services", namespace, make_service("queued"))
    wait_for(lambda: connector.outbox.depth == 3, timeout=20)
    backend.integrations = []  # a backend restart answers one empty page
    wait_fetches(backend, 2)
    kube.create("services", namespace, make_service("in-between"))
    backend.integrations = full
    backend.heal()

    for i in range(3):
        backend.wait_for(lambda i=i: titles(backend, f"shop-{i}") == [
            "Service Created: queued", "Service Created: in-between"], timeout=30)
    assert {k: r.greenlet for k, r in connector.pool.running.items()} == greenlets  # never stopped, no re-baseline
    kube.create("services", namespace, make_service("after"))
    backend.wait_for(lambda: titles(backend, "shop-0")[-1:] == ["Service Created: after"], timeout=20)
    assert backend.tenant_mismatches() == []


def test_an_empty_list_confirmed_by_three_fetches_stops_the_watches(
        control_plane, kube, namespace, backend, connector_factory):
    for i in range(2):
        add(backend, control_plane, namespace, id=f"gone-{i}")
    connector = connector_factory(settings_for(backend, shrink_confirmations=3))
    wait_for(watching(connector, 2), timeout=30)
    backend.integrations = []
    wait_fetches(backend, 2)
    assert len(connector.pool.running) == 2  # still suspect
    wait_for(lambda: connector.pool.running == {}, timeout=20, message="the confirmed empty list applied")


def test_a_reactivated_integration_relists_and_reports_what_changed_while_it_was_inactive(
        control_plane, kube, namespace, backend, connector_factory):
    doc = add(backend, control_plane, namespace, id="pausable")
    connector = connector_factory(settings_for(backend))
    wait_for(watching(connector, 1), timeout=30)
    kube.create("services", namespace, make_service("before"))
    backend.wait_for(lambda: titles(backend, "pausable") == ["Service Created: before"], timeout=20)

    doc["status"] = "inactive"
    wait_for(lambda: connector.pool.running == {}, timeout=20)
    kube.create("services", namespace, make_service("while-inactive"))
    kube.delete("services", namespace, "before")
    doc["status"] = "active"
    backend.wait_for(lambda: sorted(titles(backend, "pausable")) == sorted([
        "Service Created: before", "Service Created: while-inactive", "Service Deleted: before"]), timeout=30)


def test_a_tenant_pointing_at_loopback_or_link_local_gets_a_clear_error_and_no_request_is_made(
        control_plane, kube, namespace, backend, connector_factory, logs):
    # The honest tenant's cluster is the test apiserver on 127.0.0.1 (re-allowed, /32 only);
    # the sneaky one points at a listener on 127.0.0.2: loopback too, and not re-allowed.
    trap = FaultyProxy(("127.0.0.1", control_plane.api_port), listen=("127.0.0.2", 0)).start()
    try:
        add(backend, control_plane, namespace, id="sneaky", server=f"https://127.0.0.2:{trap.port}")
        add(backend, control_plane, namespace, id="metadata", server="https://169.254.169.254")
        add(backend, control_plane, namespace, id="honest", tenant="t-2")
        connector = connector_factory(settings_for(backend, allowed_server_networks=("127.0.0.1/32",)))
        states = connector.pool.states
        wait_for(lambda: states().get(f"sneaky/envtest/services/{namespace}") == "refused"
                 and states().get(f"metadata/envtest/services/{namespace}") == "refused"
                 and states().get(f"honest/envtest/services/{namespace}") == "watching", timeout=30)
        kube.create("services", namespace, make_service("web"))
        backend.wait_for(lambda: titles(backend, "honest") == ["Service Created: web"], timeout=20)
        assert trap.accepted == 0  # the tenant's watch (and its connection test) never connected
    finally:
        trap.close()
    refusals = [r["message"] for r in logs if "refused to connect" in r["message"]]
    assert any("127.0.0.2 is a loopback address" in m for m in refusals), refusals
    assert any("169.254.169.254 is a link-local address" in m for m in refusals), refusals
    assert control_plane.admin_token not in "".join(r["message"] for r in logs)


def test_a_tenants_plain_http_server_is_rejected_before_any_connection(backend, connector_factory):
    backend.add_integration("clear", tenant_id="t-1", config={
        "name": "clear", "tags": [], "clusters": [{"name": "c", "server": "http://k8s.example.com", "token": "x" * 30}]})
    connector = connector_factory(settings_for(backend))
    wait_for(lambda: connector.last_fetch is not None and connector.last_fetch.rejected, timeout=20)
    assert "server: must be https://" in connector.last_fetch.rejected[0].errors[0]
    assert connector.pool.running == {}


def test_integration_status_goes_error_then_active_with_one_problem_event_each_way(
        control_plane, kube, namespace, backend, connector_factory, proxy):
    doc = add(backend, control_plane, namespace, id="wobbly", server=proxy.url, cluster="edge")
    connector = connector_factory(settings_for(backend))
    wait_for(watching(connector, 1), timeout=30)
    backend.wait_for(lambda: doc.get("lastSync"), timeout=20)
    proxy.refuse()
    proxy.cut_all()
    backend.wait_for(lambda: doc["status"] == "error", timeout=40)
    puts = [r for r in backend.received_at("/integrations/wobbly", "PUT")]
    assert puts and all(r.tenant == "t-1" for r in puts)
    proxy.resume()
    backend.wait_for(lambda: doc["status"] == "active", timeout=60)
    problems = [e for e in backend.events_for("wobbly") if e["data"].get("problem")]
    assert [(e["data"]["problem"], e["data"]["phase"], e["project"]) for e in problems] == [
        ("unreachable", "started", "edge:_integration"), ("unreachable", "resolved", "edge:_integration")]
    assert problems[0]["title"] == "Integration problem: cluster 'edge': cluster unreachable"


def test_an_inactive_integration_is_never_touched(backend, connector_factory):
    backend.add_integration("off", tenant_id="t-1", status="inactive")
    connector_factory(settings_for(backend))
    wait_fetches(backend, 3)
    assert backend.received_at("/integrations/off", "PUT") == []


def test_a_failure_starting_one_integration_does_not_stop_the_others(
        control_plane, kube, namespace, backend, connector_factory, monkeypatch, logs):
    import painchain_connector.clients as clients

    real = clients.build_api_client

    def flaky(cluster, **kw):  # a bad kubeconfig or an OIDC plugin failing in its own way
        if cluster.name == "broken":
            raise RuntimeError("OIDC refresh failed")
        return real(cluster, **kw)

    monkeypatch.setattr(clients, "build_api_client", flaky)
    add(backend, control_plane, namespace, id="first", cluster="broken")
    add(backend, control_plane, namespace, id="second")
    connector = connector_factory(settings_for(backend))
    wait_for(lambda: connector.pool.states().get(f"second/envtest/services/{namespace}") == "watching", timeout=30)
    kube.create("services", namespace, make_service("still-seen"))
    backend.wait_for(lambda: titles(backend, "second") == ["Service Created: still-seen"], timeout=30)
    assert connector.pool.states()[f"first/broken/services/{namespace}"] == "invalid"
    failures = [r for r in logs if "OIDC refresh failed" in r["message"]]
    assert len(failures) == 1 and failures[0]["extra"]["integration"] == "first"


def test_a_backend_unavailable_for_three_minutes_under_churn_loses_nothing(
        control_plane, kube, namespace, backend, connector_factory):
    add(backend, control_plane, namespace, id="churny", tenant="t-churn")
    connector = connector_factory(settings_for(backend, max_attempts=2))
    wait_for(watching(connector, 1), timeout=30)
    made: list[str] = []

    def churn_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            name = f"churn-{len(made)}"
            kube.create("services", namespace, make_service(name))
            made.append(name)
            gevent.sleep(2.0)

    backend.fail_with(503, path="/events")  # 2 minutes of 503 ...
    churn_for(120)
    backend.heal()
    backend.down()  # ... then 1 minute of refused connections
    churn_for(60)
    backend.up()
    expected = sorted(f"Service Created: {name}" for name in made)
    backend.wait_for(lambda: sorted(titles(backend, "churny")) == expected, timeout=120)
    dead = connector.metrics.registry.get_sample_value(
        "painchain_events_posted_total", {"kind": "Service", "result": "dead_letter"}) or 0
    assert dead == 0 and len(titles(backend, "churny")) == len(made) > 80
