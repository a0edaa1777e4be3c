"""Delivery that loses nothing: backend outages, a crash, a slow backend, a failing integration."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from painchain_connector.backend import BackendClient
from painchain_connector.running import Connector
from painchain_connector.settings import Settings
from painchain_connector.sources import Fetched
from tests.e2e.helpers import integration_doc, make_integration, only
from tests.envtest.builders import make_service
from tests.envtest.controlplane import free_port
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 60  # the scenario: the backend is down for a minute


def _add(backend, control_plane, namespace, id, tenant=None):
    doc = integration_doc(id=id, tenant=tenant, server=control_plane.server, token=control_plane.admin_token,
                          ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("services"))
    backend.add_integration(id, tenant_id=tenant, config=doc["config"])


def _assert_once_each_in_object_order(events, expected_titles):
    ids = Counter(e["externalId"] for e in events)
    assert all(n == 1 for n in ids.values()), ids
    titles = [e["title"] for e in events]
    assert sorted(titles) == sorted(expected_titles)
    for name in {t.split(": ", 1)[1] for t in expected_titles}:  # per object: Created before Deleted
        mine = [t for t in titles if t.endswith(f": {name}")]
        assert mine == sorted(mine, key=lambda t: "Deleted" in t), mine


def test_backend_down_for_a_minute_then_every_event_arrives_once_in_order(control_plane, kube, namespace, backend):
    _add(backend, control_plane, namespace, "outage")
    connector = Connector(Settings(backend_url=backend.url, resync_interval=1, health_port=0,
                                   max_attempts=3, drain_timeout=2)).start()
    try:
        assert connector.ready.wait(timeout=30)
        backend.down()
        expected = []
        for i in range(10):
            kube.create("services", namespace, make_service(f"s{i}"))
            expected.append(f"Service Created: s{i}")
        for i in range(0, 10, 3):
            kube.delete("services", namespace, f"s{i}")
            expected.append(f"Service Deleted: s{i}")
        wait_for(lambda: connector.outbox.depth == len(expected), timeout=20, message="all changes queued")
        time.sleep(OUTAGE_SECONDS)  # the outage itself (patched: the connector runs meanwhile)
        assert connector.outbox.depth == len(expected)  # a minute of refused connections dropped nothing
        backend.up()
        backend.wait_for(lambda: len(backend.events_for("outage")) == len(expected), timeout=60)
        _assert_once_each_in_object_order(backend.events_for("outage"), expected)
    finally:
        connector.stop(timeout=1)


def test_one_integration_answering_500_dead_letters_while_others_flow(control_plane, kube, namespace, backend):
    # "ghost" is watched but unknown to the backend: the real backend answers 500 for it.
    backend.add_integration("known", config={"name": "k", "tags": [], "clusters": [{"name": "x", "context": "x"}]})
    kw = dict(server=control_plane.server, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
              namespaces=[namespace], resources=only("services"))
    integrations = (make_integration(id="ghost", **kw), make_integration(id="known", **kw))

    class StaticSource:
        def fetch(self):
            return Fetched(integrations)

    settings = Settings(backend_url=backend.url, resync_interval=1, health_port=0, max_attempts=3,
                        retry_initial=0.2, retry_max=1.0)
    client = BackendClient(base_url=backend.url, connect_timeout=2, read_timeout=5, pool_size=4)
    connector = Connector(settings, source=StaticSource(), poster=client).start()
    try:
        assert connector.ready.wait(timeout=30)
        for i in range(5):
            kube.create("services", namespace, make_service(f"m{i}"))
        backend.wait_for(lambda: len(backend.events_for("known")) == 5, timeout=30)
        dead = lambda: connector.metrics.registry.get_sample_value(  # noqa: E731
            "painchain_events_posted_total", {"kind": "Service", "result": "dead_letter"}) or 0
        wait_for(lambda: dead() == 5, timeout=60, message="ghost's 5 events dead-lettered")
        ghost_posts = [r for r in backend.received_at("/events") if r.json().get("integrationId") == "ghost"]
        assert len(ghost_posts) == 5 * 3  # bounded: max_attempts each, then given up
        assert backend.events_for("ghost") == []
    finally:
        connector.stop(timeout=1)


def test_slow_backend_does_not_slow_the_watches_and_the_outbox_stays_bounded(control_plane, kube, namespace,
                                                                             backend):
    _add(backend, control_plane, namespace, "slowpoke")
    connector = Connector(Settings(backend_url=backend.url, resync_interval=30, health_port=0, senders=2,
                                   outbox_max=20, post_timeout=10)).start()
    try:
        assert connector.ready.wait(timeout=30)
        backend.slow(2.0)
        for i in range(40):
            kube.create("services", namespace, make_service(f"q{i}"))
        observed = lambda: connector.metrics.registry.get_sample_value(  # noqa: E731
            "painchain_k8s_changes_observed_total", {"resource": "services", "type": "ADDED"}) or 0
        depths = []
        wait_for(lambda: depths.append(connector.outbox.depth) or observed() == 40, timeout=10,
                 message="the watch to keep up while posts take 2 s each")
        assert max(depths) <= 20
        assert len(backend.events_for("slowpoke")) < 40  # posting is genuinely slower than watching
        dropped = connector.metrics.registry.get_sample_value("painchain_events_dropped_total", {"reason": "overflow"})
        assert dropped and dropped >= 40 - 20 - 2 * 2  # the bound held by dropping the oldest, counted
    finally:
        backend.heal()
        connector.stop(timeout=1)


def _spool_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _start_cli(backend, state_dir: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), STATE_FLUSH_INTERVAL="2", ALLOWED_SERVER_NETWORKS="127.0.0.0/8")
    env.pop("KUBECONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "painchain_connector", "--backend", backend.url, "--state-dir", str(state_dir),
         "--resync-interval", "1", "--health-port", str(port), "--health-host", "127.0.0.1", "--log-format", "json"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _ready(port: int) -> bool:
    session = requests.Session()
    session.trust_env = False
    try:
        return session.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_sigkill_with_spooled_events_and_changes_while_down_loses_and_duplicates_nothing(
        control_plane, kube, namespace, backend, tmp_path):
    _add(backend, control_plane, namespace, "crashy", tenant="t-crash")
    kube.create("services", namespace, make_service("doomed"))
    state_dir, port = tmp_path / "state", free_port()
    proc = _start_cli(backend, state_dir, port)
    try:
        wait_for(lambda: _ready(port), timeout=40, message="the connector to be ready")
        backend.down()
        for i in range(6):
            kube.create("services", namespace, make_service(f"k{i}"))
        spool = state_dir / "painchain-connector.sqlite3"
        wait_for(lambda: _spool_rows(spool) >= 6, timeout=20, message="events checkpointed to the spool")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # while the connector is dead
        kube.create("services", namespace, make_service("while-dead"))
        kube.delete("services", namespace, "doomed")
        kube.delete("services", namespace, "k0")
        backend.up()
        proc = _start_cli(backend, state_dir, port)
        expected = [f"Service Created: k{i}" for i in range(6)] + [
            "Service Created: while-dead", "Service Deleted: doomed", "Service Deleted: k0"]
        backend.wait_for(lambda: sorted(e["title"] for e in backend.events_for("crashy")) == sorted(expected),
                         timeout=60)
        _assert_once_each_in_object_order(backend.events_for("crashy"), expected)
        assert all(r.tenant == "t-crash" for r in backend.received_at("/events"))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
        assert control_plane.admin_token not in stderr
