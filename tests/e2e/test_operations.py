"""Operations on the real apiserver: readiness, metrics, the embedding example, deploy manifests."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from painchain_connector.running import Connector
from painchain_connector.settings import Settings
from tests.e2e.helpers import LOOPBACK_ALLOWED, integration_doc, only
from tests.envtest.builders import make_service
from tests.envtest.controlplane import free_port
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def test_readyz_is_503_until_listed_then_stays_200_when_a_tenants_cluster_becomes_unreachable(
        control_plane, kube, namespace, backend, proxy):
    doc = integration_doc(id="ops", server=proxy.url, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                          cluster="flaky", namespaces=[namespace], resources=only("services"), tenant="t-ops")
    backend.add_integration("ops", tenant_id="t-ops", config=doc["config"])
    port = free_port()
    proxy.stall()  # the initial list hangs: not ready yet
    connector = Connector(Settings(backend_url=backend.url, resync_interval=1, health_port=port,
                                   health_host="127.0.0.1", watch_timeout=30, stall_margin=5,
                                   allowed_server_networks=LOOPBACK_ALLOWED)).start()
    http, url = _http(), f"http://127.0.0.1:{port}"
    try:
        # (a 503 Response is falsy: wait on its JSON body)
        listing = wait_for(lambda: (r := http.get(f"{url}/readyz", timeout=5)).status_code == 503
                           and r.json().get("registered") and r.json(), timeout=15)
        assert listing["reasons"] == ["1 watch(es) still on their first list"]
        assert http.get(f"{url}/healthz", timeout=5).status_code == 200
        proxy.unstall()
        proxy.cut_all()  # the stalled list is abandoned; the retry lists for real
        wait_for(lambda: http.get(f"{url}/readyz", timeout=5).status_code == 200, timeout=40)
        proxy.refuse()
        proxy.cut_all()
        wait_for(lambda: connector.pool.states() == {f"ops/flaky/services/{namespace}": "unreachable"}, timeout=30)
        ready = http.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["watches"] == {"total": 1, "unreachable": 1}
        assert "ops" not in ready.text and "flaky" not in ready.text  # counts, not tenants' names
        detail = http.get(f"{url}/status", timeout=5).json()  # loopback client: the operator's view
        assert detail["integrations"]["ops"]["flaky"][f"services/{namespace}"]["state"] == "unreachable"
    finally:
        proxy.resume()
        proxy.unstall()
        connector.stop(timeout=1)


def _sample(text: str, name: str, **labels) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        metric = line.split("{", 1)[0].split(" ", 1)[0]
        if metric == name and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_move_as_events_flow(control_plane, kube, namespace, backend):
    doc = integration_doc(id="metered", server=control_plane.server, token=control_plane.admin_token,
                          ca_b64=control_plane.ca_b64, namespaces=[namespace], resources=only("services"))
    backend.add_integration("metered", config=doc["config"])
    port = free_port()
    connector = Connector(Settings(backend_url=backend.url, resync_interval=1, health_port=port,
                                   health_host="127.0.0.1")).start()
    http, url = _http(), f"http://127.0.0.1:{port}/metrics"
    try:
        assert connector.ready.wait(timeout=30)
        before = http.get(url, timeout=5).text
        assert _sample(before, "painchain_watches", state="watching") == 1
        kube.create("services", namespace, make_service("counted"))
        backend.wait_for(lambda: len(backend.events_for("metered")) == 1, timeout=20)
        after = wait_for(lambda: (t := http.get(url, timeout=5).text)
                         and _sample(t, "painchain_events_posted_total", kind="Service", result="stored") == 1 and t,
                         timeout=10)
        assert _sample(after, "painchain_events_emitted_total", kind="Service", reason="Created") == 1
        assert _sample(after, "painchain_k8s_changes_observed_total", resource="services", type="ADDED") == 1
        assert _sample(after, "painchain_post_seconds_count") >= 1
        assert _sample(after, "painchain_integrations", validity="valid") == 1
        assert "counted" not in after  # no object names in metrics
    finally:
        connector.stop(timeout=1)


def test_embedding_example_delivers_events_and_stops_cleanly(control_plane, kube, namespace, tmp_path):
    config = tmp_path / "integrations.yaml"
    config.write_text(yaml.safe_dump([integration_doc(
        id="embedded", server=control_plane.server, token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
        namespaces=[namespace], resources=only("services"))]))
    sink = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env["PYTHONPATH"] = str(ROOT)  # also works where the package is not installed (a dev checkout)
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "embedded_app.py"), "--config", str(config),
                             "--sink", str(sink), "--port", "0"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().rsplit(" ", 1)[1])
        http = _http()
        wait_for(lambda: http.get(f"http://127.0.0.1:{port}/", timeout=5).json()["connectorReady"], timeout=30)
        kube.create("services", namespace, make_service("embedded-svc"))
        wait_for(lambda: sink.exists() and "Service Created: embedded-svc" in sink.read_text(), timeout=20)
        event = json.loads(sink.read_text().splitlines()[0])
        assert event["integrationId"] == "embedded" and event["project"] == f"envtest:{namespace}"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err[-2000:]
        assert "stopped cleanly, 0 events lost" in out
        assert control_plane.admin_token not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_deploy_manifests_are_accepted_by_the_apiserver(kube):
    docs = []
    for path in sorted((ROOT / "deploy").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    kinds = sorted(d["kind"] for d in docs)
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment"} <= set(kinds)
    plural = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings",
              "Deployment": "deployments", "Service": "services"}
    from tests.envtest.kube import path_for

    for doc in docs:
        namespace = doc["metadata"].get("namespace")
        answer = kube.request("POST", path_for(plural[doc["kind"]], namespace), body=doc, params={"dryRun": "All"})
        # 404 only for a namespace that a dry run could not create first; anything else must be accepted
        assert answer.status_code in (200, 201) or (answer.status_code == 404 and namespace), (doc["kind"], answer.text)
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    wanted = {(r, v) for r in ("pods", "services", "events", "deployments", "statefulsets", "daemonsets")
              for v in ("get", "list", "watch")}
    assert granted == wanted  # least privilege: exactly these
