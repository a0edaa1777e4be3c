"""Integrations exactly as the PainChain UI stores them (issue #12), on the real apiserver:
`namespaces` is a `text` field (the typed string), `clusters` a `textarea` (parsed JSON, or
the raw text when the JSON is invalid); a broken edit keeps the last good config running."""
import json

import pytest

from painchain_connector.running import Connector
from painchain_connector.settings import Settings
from tests.e2e.helpers import LOOPBACK_ALLOWED, only
from tests.envtest.builders import make_service
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def connector_for(backend):
    started = []

    def make() -> Connector:
        connector = Connector(Settings(backend_url=backend.url, resync_interval=1.0, health_port=0,
                                       watch_timeout=30.0, drain_timeout=2.0,
                                       allowed_server_networks=LOOPBACK_ALLOWED)).start()
        started.append(connector)
        return connector

    yield make
    for connector in started:
        connector.stop(timeout=1)


def ui_config(control_plane, *, namespaces, clusters=None) -> dict:
    """What the UI's form posts: typed strings for text fields, parsed JSON for text areas."""
    cluster = {"name": "envtest", "server": control_plane.server, "token": control_plane.admin_token,
               "certificate": control_plane.ca_b64}
    return {"name": "From the UI", "tags": ["ui"], "clusters": clusters if clusters is not None else [cluster],
            "namespaces": namespaces, "resources": only("services")}


def watched_namespaces(connector) -> set[str]:
    """The namespaces watched, once every watch has listed (a change made before that is baseline)."""
    states = connector.pool.states()
    if not states or set(states.values()) != {"watching"}:
        return set()
    return {k.namespace for k in connector.pool.running}


def titles(backend, integration_id):
    return [e["title"] for e in backend.events_for(integration_id) if not e["data"].get("problem")]


def test_namespaces_typed_in_the_ui_are_watched(control_plane, kube, namespace, backend, connector_for):
    backend.add_integration("typed", tenant_id="t-ui", config=ui_config(control_plane, namespaces=f"{namespace}, other-ns"))
    connector = connector_for()
    wait_for(lambda: watched_namespaces(connector) == {namespace, "other-ns"}, timeout=20)
    kube.create("services", namespace, make_service("typed-web"))
    backend.wait_for(lambda: titles(backend, "typed") == ["Service Created: typed-web"], timeout=20)


def test_blank_namespaces_from_the_ui_watch_all_namespaces(control_plane, kube, namespace, backend, connector_for):
    backend.add_integration("blank", tenant_id="t-ui", config=ui_config(control_plane, namespaces=""))
    connector = connector_for()
    wait_for(lambda: watched_namespaces(connector) == {""}, timeout=20)
    kube.create("services", namespace, make_service("anywhere"))
    backend.wait_for(lambda: "Service Created: anywhere" in titles(backend, "blank"), timeout=20)


def test_editing_namespaces_in_the_ui_adds_a_watch_and_keeps_the_others(
        control_plane, kube, namespace, backend, connector_for):
    doc = backend.add_integration("edited", tenant_id="t-ui", config=ui_config(control_plane, namespaces=[namespace]))
    connector = connector_for()
    wait_for(lambda: watched_namespaces(connector) == {namespace}, timeout=20)
    before = {k: r.greenlet for k, r in connector.pool.running.items()}
    doc["config"]["namespaces"] = f"{namespace}, other"  # the UI shows the list joined; the user adds one
    wait_for(lambda: watched_namespaces(connector) == {namespace, "other"}, timeout=20)
    assert all(connector.pool.running[k].greenlet is g for k, g in before.items())


def test_invalid_json_typed_into_clusters_is_rejected_with_the_field_named_and_reported(
        control_plane, backend, connector_for):
    typed = json.dumps([{"name": "x", "server": control_plane.server, "token": control_plane.admin_token}])[:-3]
    doc = backend.add_integration("typo", tenant_id="t-ui", config=ui_config(control_plane, namespaces="",
                                                                           clusters=typed))
    connector = connector_for()
    backend.wait_for(lambda: doc["status"] == "error", timeout=20)
    assert connector.pool.running == {}
    [problem] = [e for e in backend.events_for("typo") if e["data"].get("problem")]
    assert problem["project"] == "_integration" and problem["data"]["phase"] == "started"
    assert problem["data"]["reason"].startswith("config.clusters: not valid JSON")
    assert control_plane.admin_token not in json.dumps(problem)


def test_an_edit_that_breaks_the_config_keeps_the_last_good_one_running_until_fixed(
        control_plane, kube, namespace, backend, connector_for):
    doc = backend.add_integration("kept", tenant_id="t-ui", config=ui_config(control_plane, namespaces=[namespace]))
    good_clusters = doc["config"]["clusters"]
    connector = connector_for()
    wait_for(lambda: watched_namespaces(connector) == {namespace}, timeout=20)
    backend.wait_for(lambda: doc.get("lastSync"), timeout=20)

    doc["config"]["clusters"] = '[{"name": "envtest", "server": '  # a half-typed edit
    backend.wait_for(lambda: doc["status"] == "error", timeout=20)
    kube.create("services", namespace, make_service("during-typo"))
    backend.wait_for(lambda: titles(backend, "kept") == ["Service Created: during-typo"], timeout=20)
    problems = lambda: [(e["data"]["problem"], e["data"]["phase"]) for e in backend.events_for("kept")  # noqa: E731
                        if e["data"].get("problem")]
    assert problems() == [("config", "started")]

    doc["config"]["clusters"] = good_clusters
    backend.wait_for(lambda: doc["status"] == "active", timeout=20)
    backend.wait_for(lambda: problems() == [("config", "started"), ("config", "resolved")], timeout=20)
