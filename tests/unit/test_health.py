"""/healthz /readyz /metrics: what a kubelet and Prometheus see."""
import json
import time
from wsgiref.util import setup_testing_defaults

import gevent
import pytest
import requests

from painchain_connector.health import HealthServer, make_app, readiness_report
from painchain_connector.metrics import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(app, path, method="GET"):
    """One request through the WSGI app, no socket: (status code, headers, body bytes)."""
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return int(seen["status"].split()[0]), seen["headers"], body


class State:
    """What the Connector would report; tests change it and ask /readyz again."""

    def __init__(self) -> None:
        self.registered = True
        self.integrations_fetched = True
        self.watches: dict[str, str] = {}
        self.tried: set[str] = set()

    def readiness(self):
        return readiness_report(
            registered=self.registered,
            local_mode=False,
            integrations_fetched=self.integrations_fetched,
            watches=self.watches,
            tried=self.tried,
        )


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def state():
    return State()


@pytest.fixture
def server(clock, state):
    return HealthServer(
        host="127.0.0.1", port=0, metrics=Metrics(), readiness=state.readiness, heartbeat_max_age=5.0, clock=clock
    )


def test_healthz_is_ok_while_the_heartbeat_is_fresh(server, clock):
    clock.now += 4.9
    status, headers, body = call(server.app, "/healthz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok"}


def test_healthz_is_503_when_the_heartbeat_is_stale(server, clock):
    clock.now += 5.5  # the hub did not run the heartbeat for 5.5 s
    status, _, body = call(server.app, "/healthz")
    assert status == 503
    assert json.loads(body) == {"status": "stalled", "heartbeat_age_seconds": 5.5}

    server.beat()
    assert call(server.app, "/healthz")[0] == 200


def test_readyz_is_503_while_a_watch_is_on_its_first_list_and_names_no_tenant(server, state):
    state.watches = {
        "int-1/prod/pods/*": "watching",
        "int-1/prod/events/*": "listing",
        "int-1/staging/pods/default": "forbidden",
    }
    status, _, body = call(server.app, "/readyz")
    details = json.loads(body)
    assert status == 503 and details["ready"] is False
    assert details["reasons"] == ["1 watch(es) still on their first list"]
    assert "int-1" not in body.decode() and "prod" not in body.decode()

    state.watches["int-1/prod/events/*"] = "watching"
    status, _, body = call(server.app, "/readyz")
    details = json.loads(body)
    assert status == 200 and details["ready"] is True
    assert details["watches"] == {"total": 3, "forbidden": 1, "watching": 2}
    assert "int-1" not in body.decode() and "staging" not in body.decode()


def test_readyz_is_503_until_registered_and_integrations_fetched(server, state):
    state.registered = False
    state.integrations_fetched = False
    status, _, body = call(server.app, "/readyz")
    assert status == 503
    assert json.loads(body)["reasons"] == ["not registered with the backend yet", "integrations not fetched yet"]


def test_readiness_report_in_local_mode_needs_no_registration():
    ready, details = readiness_report(registered=False, local_mode=True, integrations_fetched=True, watches={})
    assert ready and details["watches"] == {"total": 0}


@pytest.mark.parametrize("state_name", ["backoff", "forbidden", "unauthorized", "invalid", "unreachable", "refused"])
def test_a_tenants_failing_cluster_does_not_hold_readiness(state_name):
    ready, details = readiness_report(
        registered=True, local_mode=False, integrations_fetched=True,
        watches={"i/c/pods/*": state_name, "i/up/pods/*": "watching"},
    )
    assert ready and details["watches"] == {"total": 2, state_name: 1, "watching": 1}


def test_a_watch_retrying_its_list_after_a_failure_is_not_pending():
    ready, _ = readiness_report(registered=True, local_mode=False, integrations_fetched=True,
                                watches={"i/down/pods/*": "listing"}, tried={"i/down/pods/*"})
    assert ready


def test_once_ready_new_watches_on_their_first_list_do_not_make_the_pod_unready():
    args = dict(registered=True, local_mode=False, integrations_fetched=True, watches={"i/new/pods/*": "starting"})
    assert not readiness_report(**args)[0]
    assert readiness_report(**args, was_ready=True)[0]
    ready, details = readiness_report(**{**args, "registered": False}, was_ready=True)
    assert not ready and details["reasons"] == ["not registered with the backend yet"]


def test_readiness_needs_the_engine_and_delivery_running():
    ready, details = readiness_report(registered=True, local_mode=False, integrations_fetched=True, watches={},
                                      running=False, was_ready=True)
    assert not ready and details["reasons"] == ["the watch engine or delivery is not running"]


def test_status_detail_answers_loopback_clients_only_unless_public():
    detail = {"integrations": {"int-1": {"prod": {"pods/*": {"state": "watching"}}}}}
    private = make_app(registry=Metrics().registry, readiness=lambda: (True, {}), alive=lambda: (True, {}),
                       status=lambda: detail)
    public = make_app(registry=Metrics().registry, readiness=lambda: (True, {}), alive=lambda: (True, {}),
                      status=lambda: detail, status_public=True)
    for app, remote, expected in [(private, "127.0.0.1", 200), (private, "10.1.2.3", 403), (public, "10.1.2.3", 200)]:
        environ = {"PATH_INFO": "/status", "REQUEST_METHOD": "GET", "REMOTE_ADDR": remote}
        setup_testing_defaults(environ)
        seen: dict = {}
        body = b"".join(app(environ, lambda status, headers, exc_info=None, seen=seen: seen.update(status=status)))
        assert int(seen["status"].split()[0]) == expected
        assert (json.loads(body) == detail) == (expected == 200)


def test_readyz_answers_503_when_the_readiness_check_itself_fails():
    def broken():
        raise RuntimeError("state lookup failed: Authorization: Bearer abc.def")

    app = make_app(registry=Metrics().registry, readiness=broken, alive=lambda: (True, {}))
    status, _, body = call(app, "/readyz")
    details = json.loads(body)
    assert status == 503 and details["ready"] is False
    assert "abc.def" not in body.decode() and "state lookup failed" in details["reasons"][0]


def test_metrics_exposes_counters_in_prometheus_text_format(server):
    metrics = Metrics()
    app = make_app(registry=metrics.registry, readiness=lambda: (True, {}), alive=lambda: (True, {}))
    metrics.watch_restarts.labels(resource="pods", reason="gone").inc(3)

    status, headers, body = call(app, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'painchain_watch_restarts_total{reason="gone",resource="pods"} 3.0' in body.decode()


def test_unknown_paths_are_404_and_writes_are_405(server):
    assert call(server.app, "/")[0] == 404
    assert call(server.app, "/healthz/extra")[0] == 404
    status, headers, _ = call(server.app, "/healthz", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_head_returns_headers_without_body(server):
    status, headers, body = call(server.app, "/healthz", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        gevent.sleep(0.01)


def test_server_answers_over_http_on_a_loopback_port(state):
    metrics = Metrics()
    metrics.events_dropped.labels(reason="overflow").inc()
    server = HealthServer(host="127.0.0.1", port=0, metrics=metrics, readiness=state.readiness)
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment for 127.0.0.1
    server.start()
    try:
        assert server.port > 0
        base = f"http://127.0.0.1:{server.port}"

        assert session.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        assert session.get(f"{base}/readyz", timeout=5).status_code == 200
        state.watches = {"i/c/pods/*": "listing"}
        ready = session.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["reasons"] == ["1 watch(es) still on their first list"]
        assert 'painchain_events_dropped_total{reason="overflow"} 1.0' in session.get(f"{base}/metrics", timeout=5).text
        assert session.get(f"{base}/nope", timeout=5).status_code == 404
    finally:
        session.close()  # else stop() waits its timeout for the idle keep-alive connection
        server.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(f"{base}/healthz", timeout=5)


def test_heartbeat_greenlet_keeps_healthz_fresh_while_the_hub_runs(state, clock):
    server = HealthServer(
        host="127.0.0.1", port=0, metrics=Metrics(), readiness=state.readiness, clock=clock, heartbeat_interval=0.01
    )
    server.start()
    try:
        clock.now += 60  # as if the process had been suspended for a minute
        assert call(server.app, "/healthz")[0] == 503
        wait_for(lambda: call(server.app, "/healthz")[0] == 200)  # the heartbeat caught up
    finally:
        server.stop()
