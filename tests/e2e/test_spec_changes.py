"""Issue 19 on the real apiserver: an Updated event says exactly what changed, and never a
secret (neither in the posted event nor in any log line)."""
import io
import json

import pytest

from painchain_connector.logs import configure_logging, reset_logging
from painchain_connector.running import Connector
from painchain_connector.settings import Settings
from tests.e2e.helpers import LOOPBACK_ALLOWED, integration_doc, only
from tests.envtest.builders import DEFAULT_IMAGE, make_deployment
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "Sup3r-S3cret-Passw0rd-e2e-19"
NEW_PASSWORD = "An0ther-S3cret-Passw0rd-e2e-19"


@pytest.fixture
def captured_logs():
    sink = io.StringIO()
    configure_logging(level="TRACE", fmt="json", sink=sink)
    yield sink
    reset_logging()


def _api(name):
    body = make_deployment(name, replicas=2)
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "DB_PASSWORD", "value": PASSWORD}, {"name": "LOG_LEVEL", "value": "info"}]
    return body


def test_one_update_of_image_resources_and_env_is_one_event_naming_each_and_no_value(
        control_plane, kube, namespace, backend, captured_logs):
    doc = integration_doc(server=control_plane.server, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                          id="diffs", namespaces=[namespace], resources=only("deployments"))
    backend.add_integration("diffs", config=doc["config"])
    connector = Connector(Settings(backend_url=backend.url, resync_interval=1, health_port=0, watch_timeout=30,
                                   allowed_server_networks=LOOPBACK_ALLOWED)).start()
    titles = lambda: [e["title"] for e in backend.events_for("diffs")]  # noqa: E731
    try:
        wait_for(lambda: set(connector.pool.states().values()) == {"watching"}, timeout=30)
        kube.create("deployments", namespace, _api("api"))
        backend.wait_for(lambda: "Deployment Created: api" in titles(), timeout=30)
        # one update: image, memory limit and a literal env value
        kube.patch("deployments", namespace, "api", {"spec": {"template": {"spec": {"containers": [{
            "name": "main", "image": "registry.example/app:1.1",
            "resources": {"limits": {"memory": "512Mi"}},
            "env": [{"name": "DB_PASSWORD", "value": NEW_PASSWORD}, {"name": "LOG_LEVEL", "value": "info"}]}]}}}})
        # the object's own annotations (not its template): no event
        kube.patch("deployments", namespace, "api", {"metadata": {"annotations": {"team": "payments"}}})
        kube.patch("deployments", namespace, "api", {"spec": {"replicas": 4}})
        backend.wait_for(lambda: any(t.startswith("Deployment Scaled: api") for t in titles()), timeout=30)
    finally:
        connector.stop(timeout=2)

    events = backend.events_for("diffs")
    updated = [e for e in events if e["data"]["reason"] == "Updated"]
    assert [e["title"].split(":")[0] for e in events] == [
        "Deployment Created", "Deployment Updated", "Deployment Scaled"]  # the annotation added nothing
    assert updated[0]["data"]["changes"] == [
        {"path": "containers[main].image", "change": "changed", "old": DEFAULT_IMAGE, "new": "registry.example/app:1.1"},
        {"path": "containers[main].resources.limits.memory", "change": "added", "new": "512Mi"},
        {"path": "containers[main].env.DB_PASSWORD", "change": "changed"},
    ]
    assert events[2]["title"] == "Deployment Scaled: api (2 → 4)"
    posted, logged = json.dumps(events), captured_logs.getvalue()
    assert "DB_PASSWORD" in posted and "connection test passed" in logged  # both really looked at
    for secret in (PASSWORD, NEW_PASSWORD):
        assert secret not in posted and secret not in logged
