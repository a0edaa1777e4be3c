"""No token, CA bundle or integration config in any log line, across the fault scenarios."""
import base64
import io

import pytest

from painchain_connector.logs import configure_logging, reset_logging
from painchain_connector.running import Connector
from painchain_connector.settings import Settings
from tests.e2e.helpers import integration_doc, only
from tests.envtest.builders import make_service
from tests.envtest.controlplane import free_port
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e

BAD_TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.bad-token-payload-4f6c1d.c2lnbmF0dXJl"
MIXED_TOKEN = "mixed-mode-token-9a8b7c6d5e4f3a2b1c0d"
UNREACHABLE_TOKEN = "unreachable-token-1q2w3e4r5t6y7u8i9o0p"


@pytest.fixture
def captured_logs():
    sink = io.StringIO()
    configure_logging(level="TRACE", fmt="json", sink=sink)
    yield sink
    reset_logging()


def test_fault_scenarios_never_log_a_secret(control_plane, kube, namespace, proxy, force_gone, restricted_token,
                                            backend, captured_logs):
    limited = restricted_token(namespaces=[namespace], resources=["services"])
    ca = control_plane.ca_b64

    def add(id, **kw):
        doc = integration_doc(id=id, ca_b64=ca, namespaces=[namespace], **kw)
        backend.add_integration(id, config=doc["config"])
        return doc

    add("through-proxy", server=proxy.url, token=control_plane.admin_token, resources=only("services", "events"))
    add("wrong-token", server=control_plane.server, token=BAD_TOKEN, resources=only("services"))
    add("rbac-limited", server=control_plane.server, token=limited, resources=only("services", "deployments"))
    add("unreachable", server=f"https://127.0.0.1:{free_port()}", token=UNREACHABLE_TOKEN, resources=only("pods"))
    mixed = add("mixed", server=control_plane.server, token=MIXED_TOKEN)
    mixed["config"]["clusters"][0]["context"] = "also-a-context"
    backend.integrations[-1]["config"] = mixed["config"]
    backend.fail_with(500, count=3, path="/events")

    connector = Connector(Settings(backend_url=backend.url, resync_interval=1, health_port=0, max_attempts=5,
                                   watch_timeout=30, stall_margin=5)).start()
    try:
        wait_for(lambda: connector.integrations_fetched and len(connector.pool.states()) == 6
                 and "listing" not in connector.pool.states().values(), timeout=40)
        kube.create("services", namespace, make_service("first"))
        backend.wait_for(lambda: len(backend.events_for("through-proxy")) >= 1, timeout=30)
        proxy.cut_all()
        proxy.refuse()
        proxy.cut_all()
        kube.create("services", namespace, make_service("second"))
        force_gone("services", namespace)
        proxy.resume()
        backend.wait_for(lambda: len(backend.events_for("through-proxy")) >= 2, timeout=60)
    finally:
        proxy.resume()
        connector.stop(timeout=2)

    text = captured_logs.getvalue()
    # the scenarios really ran and were logged
    assert "rejected" in text and "401" in text and "forbidden" in text.lower() and "cannot reach" in text
    pem = base64.b64decode(ca).decode()
    body_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    for secret in [control_plane.admin_token, limited, BAD_TOKEN, MIXED_TOKEN, UNREACHABLE_TOKEN, ca, *body_lines]:
        assert secret not in text, f"a secret leaked into the logs ({secret[:6]}...)"
    assert "clusters" not in text or '"clusters": [' not in text  # no whole config either
