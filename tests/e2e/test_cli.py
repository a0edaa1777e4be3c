"""The console entry point as a user runs it: local mode on a kubeconfig context, backend mode failures."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.envtest.builders import make_service
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    for name in ("BACKEND_API_URL", "KUBECONFIG"):
        if name not in extra:
            env.pop(name, None)
    return env


def _run(args, env, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "painchain_connector", "--health-port", "0", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_local_mode_watches_the_current_kubeconfig_context_and_prints_json_lines(
        control_plane, kube, namespace, kubeconfig, restricted_token, tmp_path):
    token = restricted_token(namespaces=None, resources=["pods", "deployments", "services", "statefulsets",
                                                         "daemonsets", "events"])
    path = kubeconfig({"dev": token}, current="dev")
    proc = _run([], _env(KUBECONFIG=path))
    try:
        # all namespaces are watched: wait until the connector says it is ready, then change something
        wait_for(lambda: proc.poll() is not None or _said(proc, "ready"), timeout=40, message="the connector to be ready")
        assert proc.poll() is None, proc.stderr.read()
        kube.create("services", namespace, make_service("local-mode"))
        line = wait_for(lambda: proc.stdout.readline(), timeout=20, message="an event on stdout")
        event = json.loads(line)
        assert event["title"] == "Service Created: local-mode" and event["project"] == f"dev:{namespace}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


_seen: dict[int, str] = {}


def _said(proc: subprocess.Popen, word: str) -> bool:
    """Reads stderr lines without blocking forever (the process logs a line per step)."""
    line = proc.stderr.readline()
    _seen[proc.pid] = _seen.get(proc.pid, "") + line
    return word in line


def test_local_mode_reads_integrations_from_a_config_file_and_writes_the_sink(control_plane, kube, namespace,
                                                                              tmp_path):
    config = tmp_path / "integrations.yaml"
    config.write_text(yaml.safe_dump([{
        "id": "from-file", "config": {"name": "f", "tags": ["dev"], "namespaces": [namespace],
                                      "resources": {"pods": False, "deployments": False, "statefulsets": False,
                                                    "daemonsets": False, "events": False},
                                      "clusters": [{"name": "c1", "server": control_plane.server,
                                                    "token": control_plane.admin_token,
                                                    "certificate": control_plane.ca_b64}]}}]))
    sink = tmp_path / "events.jsonl"
    proc = _run(["--config", str(config), "--sink", str(sink), "--log-format", "json"], _env())
    try:
        wait_for(lambda: proc.poll() is not None or _said(proc, "ready"), timeout=40)
        assert proc.poll() is None
        kube.create("services", namespace, make_service("filed"))
        wait_for(lambda: sink.exists() and "Service Created: filed" in sink.read_text(), timeout=20)
        assert json.loads(sink.read_text().splitlines()[0])["tags"] == ["dev"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert control_plane.admin_token not in _seen.get(proc.pid, "") + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_backend_refusing_registration_exits_nonzero_with_a_clear_message(backend):
    backend.fail_with(400, path="/integrations/types/register")
    proc = _run(["--backend", backend.url], _env())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "could not register the connector type" in err and "400" in err
