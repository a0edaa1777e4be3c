"""BackendClient and sources.select against the loopback fake backend."""
from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import pytest

from painchain_connector.backend import (
    BackendClient,
    PermanentError,
    RegistrationFailed,
    TransientError,
)
from painchain_connector.model import Outgoing
from painchain_connector.sources import select

METADATA = {"id": "kubernetes", "displayName": "Kubernetes", "configSchema": {"fields": []}}
TOKEN = "eyJ-secret-token-value"


@pytest.fixture
def client(backend):
    api = BackendClient(base_url=backend.url, connect_timeout=1.0, read_timeout=1.0, pool_size=4)
    yield api
    api.close()


def event(integration_id="int-a", external_id="e-1", *, tenant_id=None, **overrides) -> Outgoing:
    body = {
        "title": f"Pod restarted: {external_id}",
        "connector": "kubernetes",
        "project": "dev:default",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "integrationId": integration_id,
        "externalId": external_id,
        "data": {},
        "tags": [],
    }
    body.update(overrides)
    body = {k: v for k, v in body.items() if v is not None}
    return Outgoing(tenant_id=tenant_id, integration_id=integration_id, external_id=external_id,
                    payload=msgspec.json.encode(body),  # as to_outgoing encodes it
                    kind="Pod", cluster="dev")


# -- register ----------------------------------------------------------------------------


def test_register_stores_the_connector_type(backend, client):
    answer = client.register(METADATA, sleep=lambda s: None)

    assert answer == {"id": "kubernetes", "displayName": "Kubernetes", "registered": True}
    assert backend.types["kubernetes"]["displayName"] == "Kubernetes"


def test_register_retries_transient_failures_with_growing_delays(backend, client):
    backend.fail_with(503, count=2, path="/integrations/types/register")
    slept = []

    client.register(METADATA, attempts=5, delay=0.1, sleep=slept.append)

    assert slept == [0.1, 0.2]
    assert "kubernetes" in backend.types


def test_register_gives_up_after_its_attempts_with_a_clear_message(backend, client):
    backend.fail_with(500)

    with pytest.raises(RegistrationFailed) as failure:
        client.register(METADATA, attempts=3, delay=0.01, sleep=lambda s: None)

    assert len(backend.received_at("/integrations/types/register")) == 3
    assert "after 3 attempts" in str(failure.value) and "HTTP 500" in str(failure.value)
    assert backend.url in str(failure.value)


def test_register_fails_at_once_when_the_backend_refuses_the_type(backend, client):
    with pytest.raises(RegistrationFailed) as failure:
        client.register({"displayName": "no id"}, attempts=5, sleep=lambda s: None)

    assert len(backend.received_at("/integrations/types/register")) == 1
    assert "HTTP 400" in str(failure.value)


def test_register_against_an_unreachable_backend_fails_clearly(backend, client):
    backend.down()

    with pytest.raises(RegistrationFailed) as failure:
        client.register(METADATA, attempts=2, sleep=lambda s: None)

    assert "connection error" in str(failure.value)


# -- integrations ------------------------------------------------------------------------


def test_list_asks_for_kubernetes_without_a_tenant_header_and_gets_every_tenant(backend, client):
    backend.add_integration("a", tenant_id="t1")
    backend.add_integration("b", tenant_id="t2")
    backend.add_integration("c", tenant_id=None)

    docs = client.list_integrations()

    assert [d["id"] for d in docs] == ["a", "b", "c"]
    (request,) = backend.received_at("/integrations", "GET")
    assert request.query == {"type": ["kubernetes"]}
    assert "x-tenant-id" not in request.headers


def test_list_failure_is_transient(backend, client):
    backend.fail_with(502, count=1)
    with pytest.raises(TransientError):
        client.list_integrations()
    backend.down()
    with pytest.raises(TransientError):
        client.list_integrations()


def test_select_keeps_active_valid_kubernetes_integrations_and_explains_rejects(backend, client):
    good_cluster = {"name": "prod", "server": "https://10.0.0.1:6443", "token": TOKEN}
    backend.add_integration("valid", tenant_id="t1", config={"name": "V", "tags": ["prod"], "clusters": [good_cluster]})
    backend.add_integration("github-one", type="github", config={"name": "G", "tags": [], "repos": []})
    backend.add_integration("paused", status="inactive", config={"name": "P", "tags": []})
    backend.add_integration("no-clusters", config={"name": "N", "tags": [], "clusters": []})
    backend.add_integration("half", status="error", config={
        "name": "H", "tags": [],
        "clusters": [good_cluster, {"name": "mixed", "server": "https://x:6443", "token": TOKEN, "context": "kind"}],
    })

    fetched = select(client.list_integrations() + ["not a document"])
    integrations, rejects = fetched.integrations, fetched.rejected

    assert [i.id for i in integrations] == ["valid", "half"]
    assert [len(i.clusters) for i in integrations] == [1, 1]
    assert integrations[0].tenant_id == "t1"
    reasons = {r.integration_id: " ".join(r.errors) for r in rejects}
    assert set(reasons) == {"no-clusters", "half", "<no id>"}
    assert "clusters" in reasons["no-clusters"]
    assert "'mixed'" in reasons["half"]
    assert TOKEN not in repr(rejects)
    assert (fetched.partial, fetched.inactive, sum(r.integration is None for r in rejects)) == (1, 1, 2)


# -- events ------------------------------------------------------------------------------


def test_post_event_is_stored_and_a_repeat_is_stored_once_with_the_original_id(backend, client):
    backend.add_integration("int-a")

    assert client.post_event(event()) == "stored"
    assert client.post_event(event()) == "stored"

    assert len(backend.events_for("int-a")) == 1
    first, repeat = backend.received_at("/events")
    assert first.status == repeat.status == 201
    assert repeat.answer == first.answer  # the original event_id and stored_at


def test_post_event_answers_duplicate_on_409(client, backend):
    backend.answer_409_for_duplicates = True
    backend.add_integration("int-a")

    assert client.post_event(event()) == "stored"
    assert client.post_event(event()) == "duplicate"


def test_post_event_for_an_unknown_integration_is_transient(client, backend):
    with pytest.raises(TransientError) as failure:
        client.post_event(event("deleted"))
    assert failure.value.status == 500 and failure.value.reached_backend


def test_post_event_too_large_is_permanent(client, backend):
    backend.add_integration("int-a")
    with pytest.raises(PermanentError) as failure:
        client.post_event(event(data={"blob": "x" * 110_000}))
    assert failure.value.status == 413


def test_post_event_missing_fields_is_permanent_and_names_them(client, backend):
    backend.add_integration("int-a")
    with pytest.raises(PermanentError) as failure:
        client.post_event(event(title=None))
    assert failure.value.status == 400
    assert "title" in failure.value.message


def test_post_event_to_a_down_backend_is_transient_and_not_charged_to_the_event(client, backend):
    backend.add_integration("int-a")
    client.post_event(event("int-a", "warm-up"))  # a kept-alive connection now exists
    backend.down()

    with pytest.raises(TransientError) as failure:
        client.post_event(event())
    assert failure.value.status is None

    with pytest.raises(TransientError) as failure:
        client.post_event(event())  # the pool is empty now: a fresh connect is refused
    assert not failure.value.reached_backend

    backend.up()
    assert client.post_event(event()) == "stored"


def test_post_event_timeout_is_transient(backend):
    backend.add_integration("int-a")
    backend.slow(0.5)
    api = BackendClient(base_url=backend.url, connect_timeout=1.0, read_timeout=0.1, pool_size=1)

    with pytest.raises(TransientError) as failure:
        api.post_event(event())
    assert "timeout" in failure.value.message


def test_tenant_header_is_sent_exactly_when_the_event_has_a_tenant(client, backend):
    backend.add_integration("int-a", tenant_id="tenant-a")
    backend.add_integration("int-b", tenant_id=None)

    client.post_event(event("int-a", "1", tenant_id="tenant-a"))
    client.post_event(event("int-b", "2", tenant_id=None))

    with_tenant, without = backend.received_at("/events")
    assert with_tenant.tenant == "tenant-a"
    assert "x-tenant-id" not in without.headers
    assert backend.tenant_mismatches() == []


def test_an_unknown_tenant_is_transient(client, backend):
    backend.add_integration("int-a", tenant_id="tenant-a")
    with pytest.raises(TransientError):
        client.post_event(event("int-a", tenant_id="nobody"))


def test_proxy_and_ca_environment_variables_are_ignored(backend, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    backend.add_integration("int-a")
    api = BackendClient(base_url=backend.url, connect_timeout=1.0, read_timeout=1.0, pool_size=1)

    assert api.post_event(event()) == "stored"


def test_posts_reuse_kept_alive_connections(client, backend):
    backend.add_integration("int-a")
    for n in range(20):
        client.post_event(event(external_id=str(n)))

    assert len(backend.events_for("int-a")) == 20
    assert backend.connections <= 2


# -- sync marks --------------------------------------------------------------------------


def test_mark_synced_sets_last_sync_with_the_tenant_header(client, backend):
    doc = backend.add_integration("int-a", tenant_id="t1")

    client.mark_synced("int-a", "t1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))

    assert doc["lastSync"] == "2026-01-02T03:04:05.000Z"
    assert backend.received_at("/integrations/int-a", "PUT")[0].tenant == "t1"


def test_mark_synced_never_raises(client, backend):
    client.mark_synced("missing", None, datetime.now(timezone.utc))  # 404
    backend.down()
    client.mark_synced("missing", None, datetime.now(timezone.utc))  # refused
