"""Client construction and the connection test, against the tests' own fake apiserver
(tests/envtest/fakeapi.py): what a real kube-apiserver cannot be made to answer."""
import socket

import pytest

from painchain_connector.clusters import (
    KEEPALIVE_IDLE, ApiError, ServerError, build_api_client, check_connection,
)
from painchain_connector.metadata import USER_AGENT
from painchain_connector.orchestration import WatchPool, wanted_watches
from painchain_connector.metrics import Metrics
from painchain_connector.schemas.integration import Cluster
from tests.e2e.helpers import Collector, fast_timing, make_integration, only
from tests.envtest.fakeapi import FakeApiServer
from tests.envtest.fixtures import wait_for


@pytest.fixture
def fake():
    with FakeApiServer() as server:
        yield server


def _kubeconfig(tmp_path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: kubeconfig-token-123}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: u}}}}]
current-context: fake
""")
    return str(path)


def _in_cluster_files(tmp_path, monkeypatch) -> None:
    from kubernetes.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("in-cluster-token-123")
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))


def test_every_client_gets_the_connector_settings_whatever_its_credentials(fake, tmp_path, monkeypatch):
    from kubernetes.config import kube_config

    # the loader reads $KUBECONFIG when it is imported: point its default at our file
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", _kubeconfig(tmp_path, fake.url))
    _in_cluster_files(tmp_path, monkeypatch)
    clients = {
        "token": build_api_client(Cluster(name="t", server=fake.url, token="token-123"), connect_timeout=5),
        "kubeconfig": build_api_client(Cluster(name="k", context="fake"), connect_timeout=5),
        "in-cluster": build_api_client(Cluster(name="i", in_cluster=True), connect_timeout=5),
    }
    for mode, api in clients.items():
        cfg = api.configuration
        assert (cfg.retries, cfg.connection_pool_maxsize, api.user_agent) == (False, 256, USER_AGENT), mode
        assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in cfg.socket_options, mode
        assert (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE) in cfg.socket_options, mode
    for mode in ("token", "kubeconfig"):  # these two can reach the fake: it sees who asks
        check_connection(clients[mode], connect_timeout=5)
    agents = [headers.get("user-agent") for _m, path, _q, headers in fake.requests if path == "/version"]
    assert agents == [USER_AGENT, USER_AGENT] and USER_AGENT.startswith("painchain-kubernetes-connector/0.")
    for api in clients.values():
        api.close()


def test_watch_sockets_have_tcp_keepalive_on(fake):
    api = build_api_client(Cluster(name="t", server=fake.url, token="token-123"), connect_timeout=5)
    check_connection(api, connect_timeout=5)
    pool = api.rest_client.pool_manager.connection_from_url(fake.url)
    conn = pool.pool.queue[-1] if pool.pool.queue[-1] is not None else pool.pool.queue[0]
    sock = conn.sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE
    api.close()


def test_a_version_answer_that_is_not_json_is_a_failed_connection_test(fake):
    fake.version = "not-json"
    api = build_api_client(Cluster(name="t", server=fake.url, token="token-123"), connect_timeout=5)
    with pytest.raises(ServerError) as caught:
        check_connection(api, connect_timeout=5)
    assert isinstance(caught.value, ApiError) and "not a Kubernetes version document" in str(caught.value)
    api.close()


def test_connection_test_failure_is_logged_and_its_greenlet_ends_cleanly(fake, logs):
    fake.version = "not-json"
    integ = make_integration(server=fake.url, token="token-123", ca_b64=None, namespaces=["default"],
                             resources=only("pods"))
    pool = WatchPool(make_emit=Collector().make_emit, timing=fast_timing(), metrics=Metrics(), connect_timeout=5)
    try:
        pool.adjust(wanted_watches([integ]))
        failed = wait_for(lambda: [r for r in logs if "connection test failed" in r["message"]], timeout=10)
        assert failed[0]["level"].name == "ERROR"
        assert "not a Kubernetes version document" in failed[0]["message"]
        pool._checks.join(timeout=5)
        assert all(g.successful() for g in pool._checks) and not list(pool._checks)
    finally:
        pool.stop_all()


def test_connection_test_passed_names_every_integration_sharing_the_credentials(fake, logs):
    shared = dict(server=fake.url, token="token-123", ca_b64=None, namespaces=["default"], resources=only("pods"))
    integrations = [make_integration(id=name, **shared) for name in ("alpha", "beta", "gamma")]
    pool = WatchPool(make_emit=Collector().make_emit, timing=fast_timing(), metrics=Metrics(), connect_timeout=5)
    try:
        pool.adjust(wanted_watches(integrations))
        passed = wait_for(lambda: [r["message"] for r in logs if "connection test passed" in r["message"]],
                          timeout=10)
        assert len(passed) == 1  # one client, one test
        assert "3 integrations (alpha, beta, gamma)" in passed[0]
    finally:
        pool.stop_all()
