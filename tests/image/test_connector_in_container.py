"""The image doing its job: local mode and backend mode against the real test apiserver,
the fake PainChain backend in this process, and a STATE_DIR volume across containers.

Every container runs hardened as in deploy/docker-compose.snippet.yml (read-only root,
tmpfs /tmp, no capabilities) on the host network; tests talk to 127.0.0.1 only.
"""
from __future__ import annotations

import json
import time

import pytest

from tests.e2e.helpers import integration_doc, only
from tests.envtest.builders import make_deployment
from tests.image.containers import STATE_DIR, free_port, healthcheck_command

pytestmark = [pytest.mark.image, pytest.mark.e2e]

DRAIN_TIMEOUT = 5


def _connector_env(backend) -> dict[str, str]:
    return {"BACKEND_API_URL": backend.url, "RESYNC_INTERVAL": "2", "DRAIN_TIMEOUT": str(DRAIN_TIMEOUT),
            "STATE_FLUSH_INTERVAL": "1", "LOG_LEVEL": "INFO",
            # the tenants' cluster is the test apiserver on the host's loopback
            "ALLOWED_SERVER_NETWORKS": "127.0.0.0/8"}


def _add_integration(backend, control_plane, namespace, *, id: str, tenant: str) -> None:
    doc = integration_doc(id=id, tenant=tenant, server=control_plane.server, token=control_plane.admin_token,
                          ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("deployments"))
    backend.add_integration(id, tenant_id=tenant, config=doc["config"])


def _posted_titles(backend, integration_id: str) -> list[str]:
    """Titles of every POST /events for the integration, repeats included (not only stored ones)."""
    return [r.json()["title"] for r in backend.received_at("/events", "POST")
            if r.json().get("integrationId") == integration_id]


def test_local_mode_reports_a_new_deployment_as_a_json_line_on_stdout(containers, control_plane, kube, namespace,
                                                                       tmp_path):
    doc = integration_doc(id="local-image", server=control_plane.server, token=control_plane.admin_token,
                          ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("deployments"))
    config = tmp_path / "integrations.json"
    config.write_text(json.dumps([doc]))
    config.chmod(0o644)  # read by uid 10001 through a read-only bind mount
    container = containers("--config", "/etc/painchain/integrations.json",
                           env={"BACKEND_API_URL": ""}, health_port=free_port(),
                           volumes=(f"{config}:/etc/painchain/integrations.json:ro",))
    container.wait_ready()
    kube.create("deployments", namespace, make_deployment("web"))
    line = container.wait_until(
        lambda: next((e for e in container.json_lines() if e.get("title") == "Deployment Created: web"), None),
        timeout=30, what="the Deployment as a JSON line on stdout")
    assert line["integrationId"] == "local-image" and line["connector"] == "kubernetes"
    assert line["project"] == f"envtest:{namespace}"
    assert control_plane.admin_token not in "\n".join(container.stdout + container.stderr)


def test_backend_mode_posts_events_with_the_tenant_header(containers, backend, control_plane, kube, namespace):
    _add_integration(backend, control_plane, namespace, id="acme-prod", tenant="tenant-acme")
    container = containers(env=_connector_env(backend), health_port=free_port())
    container.wait_ready()
    assert [r.json()["id"] for r in backend.received_at("/integrations/types/register")] == ["kubernetes"]
    kube.create("deployments", namespace, make_deployment("api"))
    backend.wait_for(lambda: _posted_titles(backend, "acme-prod") == ["Deployment Created: api"], timeout=30)
    assert {r.tenant for r in backend.received_at("/events", "POST")} == {"tenant-acme"}
    assert backend.tenant_mismatches() == []


def test_healthcheck_command_passes_once_ready(containers, backend, image):
    command = healthcheck_command(image)
    container = containers(env=_connector_env(backend), health_port=free_port())
    container.wait_ready()
    check = container.exec(*command)
    assert check.returncode == 0, check.stderr
    wrong_port = container.exec("env", "HEALTH_PORT=1", *command)  # nothing listens on port 1
    assert wrong_port.returncode != 0, "the HEALTHCHECK command passes whatever it checks"


def _stop_and_time(container) -> float:
    """SIGTERM; asserts exit code 0; returns the seconds from the signal to the process's exit
    (its delivery through `podman kill` included, podman's teardown afterwards not)."""
    signalled = time.time()
    container.signal("TERM")
    assert container.wait(timeout=DRAIN_TIMEOUT + 10) == 0, container.log_tail()
    return container.finished_at() - signalled


def test_sigterm_exits_zero_within_drain_timeout(containers, backend, control_plane, kube, namespace):
    _add_integration(backend, control_plane, namespace, id="drain", tenant="tenant-drain")
    container = containers(env=_connector_env(backend), health_port=free_port())
    container.wait_ready()
    kube.create("deployments", namespace, make_deployment("delivered"))
    backend.wait_for(lambda: _posted_titles(backend, "drain"), timeout=30)
    assert _stop_and_time(container) < DRAIN_TIMEOUT


def test_sigterm_with_the_backend_down_gives_up_the_drain_after_drain_timeout(
        containers, backend, control_plane, kube, namespace):
    _add_integration(backend, control_plane, namespace, id="stuck", tenant="tenant-stuck")
    container = containers(env=_connector_env(backend), health_port=free_port())
    container.wait_ready()
    backend.down()  # the next event cannot be delivered: only the drain's deadline ends the wait
    kube.create("deployments", namespace, make_deployment("undeliverable"))
    container.wait_until(lambda: container.metric("painchain_outbox_depth") >= 1, timeout=30,
                         what="the undeliverable event in the outbox")
    # All of DRAIN_TIMEOUT may go to the drain; stopping the rest takes well under 2 s.
    assert _stop_and_time(container) <= DRAIN_TIMEOUT + 2


def test_state_volume_carries_changes_made_while_stopped_into_the_next_container(
        containers, backend, control_plane, kube, namespace, state_volume):
    _add_integration(backend, control_plane, namespace, id="stateful", tenant="tenant-s")
    volume = (f"{state_volume}:{STATE_DIR}",)
    first = containers(env=_connector_env(backend), health_port=free_port(), volumes=volume)
    first.wait_ready()
    kube.create("deployments", namespace, make_deployment("before"))
    backend.wait_for(lambda: _posted_titles(backend, "stateful") == ["Deployment Created: before"], timeout=30)
    _stop_and_time(first)

    # While no connector runs:
    kube.create("deployments", namespace, make_deployment("while-stopped"))
    kube.delete("deployments", namespace, "before")

    second = containers(env=_connector_env(backend), health_port=free_port(), volumes=volume)
    second.wait_ready()
    kube.create("deployments", namespace, make_deployment("after"))  # ordered after anything replayed
    backend.wait_for(lambda: "Deployment Created: after" in _posted_titles(backend, "stateful"), timeout=30)
    titles = _posted_titles(backend, "stateful")
    assert titles[0] == "Deployment Created: before" and titles[-1] == "Deployment Created: after", titles
    assert sorted(titles[1:-1]) == ["Deployment Created: while-stopped", "Deployment Deleted: before"], titles
