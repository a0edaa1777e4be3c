"""`painchain-connector --demo` as a newcomer runs it: the story's events in order, nothing left behind.

Each test runs the real command (its own control plane from the cached binaries, the
connector, the story) with DEMO_PACE=0.5 and TMPDIR in the test's directory, so "nothing
left behind" is checkable: no process whose command line names that directory, and an
empty directory.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import gevent
import pytest

from painchain_connector.demo.kube import Kube

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
GOOD, NEW = "ghcr.io/example/web:1.4.0", "ghcr.io/example/web:1.5.0"
BAD = "web-85x8kthhng-kx2nv"  # the crash-looping pod of ghcr.io/example/web:1.5.0 (names are deterministic)
STORY = [
    "Deployment Created: web",
    "Pod Created: web-98kzsmqbfk-rk9hr",
    "Pod Created: web-98kzsmqbfk-nvkrm",
    "Deployment Rollout Complete: web",
    "Deployment Scaled: web (2 → 3)",
    "Pod Created: web-98kzsmqbfk-7dr8r",
    f"Deployment Updated: web: containers[main].image {GOOD} → {NEW}",
    f"Pod Created: {BAD}",
    "Service Created: web-canary",
    f"Pod Container Terminated: {BAD} (main: exit 1, Error) after rollout of Deployment web",
    f"Pod Restarted: {BAD} (restarts 0 → 1)",
    f"Pod CrashLoopBackOff: {BAD} after rollout of Deployment web",
    f"K8s Event [Warning]: BackOff - Pod/{BAD}",
    f"Deployment Updated: web: containers[main].image {NEW} → {GOOD}",
    f"Pod Deleted: {BAD}",
    "Deployment Rollout Complete: web",
    "Service Deleted: web-canary",
]


def _start(tmp_path, *args) -> tuple[subprocess.Popen, Path]:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), DEMO_PACE="0.5", TMPDIR=str(scratch))
    for name in ("BACKEND_API_URL", "KUBECONFIG", "LOG_LEVEL", "HEALTH_PORT"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "painchain_connector", "--demo", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, scratch


def _left_behind(scratch: Path) -> tuple[list[str], list[str]]:
    """(command lines of processes naming `scratch`, entries of `scratch`)."""
    procs = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(scratch) in cmdline:
                procs.append(f"{entry.name}: {cmdline}")
    return procs, sorted(p.name for p in scratch.iterdir())


def _read_until(stream, text: str, *, timeout: float) -> str:
    seen = ""
    with gevent.Timeout(timeout, AssertionError(f"no {text!r} within {timeout}s")):
        while text not in seen:
            line = stream.readline()
            if not line:
                raise AssertionError(f"stream ended before {text!r}: {seen}")
            seen += line
    return seen


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_demo_reports_the_storys_events_in_order_and_nothing_else_then_exits_0(tmp_path):
    proc, scratch = _start(tmp_path)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        _stop(proc)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]  # not a terminal: JSON lines
    assert [e["title"] for e in events] == STORY, err
    assert {e["project"] for e in events} == {"demo:demo"}
    assert "the story's events, in order, and nothing else" in err
    assert "17 of 17 events concern Deployment web" in err and "tox -e run -- --backend" in err
    assert _left_behind(scratch) == ([], [])


@pytest.mark.parametrize("moment", ["starting a Kubernetes control plane", "[3/5]"],
                         ids=["while-the-control-plane-starts", "mid-story"])
def test_sigterm_stops_the_story_the_connector_and_the_control_plane_leaving_nothing(tmp_path, moment):
    proc, scratch = _start(tmp_path)
    try:
        _read_until(proc.stderr, moment, timeout=120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        _stop(proc)
    assert "nothing is left running" in proc.stderr.read()
    assert _left_behind(scratch) == ([], [])


def test_keep_leaves_the_cluster_up_for_the_users_changes_until_ctrl_c(tmp_path):
    proc, scratch = _start(tmp_path, "--keep")
    try:
        said = _read_until(proc.stderr, "Ctrl-C stops everything", timeout=180)
        kubeconfig = json.loads(Path(said.split("export KUBECONFIG=")[1].split()[0]).read_text())
        cluster, user = kubeconfig["clusters"][0]["cluster"], kubeconfig["users"][0]["user"]
        kube = Kube(server=cluster["server"], ca_file=cluster["certificate-authority"], token=user["token"])
        kube.patch("deployments", "demo", "web", {"spec": {"replicas": 5}})  # kubectl scale, by the user
        # JSON lines, in UTF-8 (the payload as posted)
        _read_until(proc.stdout, json.dumps("Deployment Scaled: web (3 → 5)", ensure_ascii=False), timeout=30)
        kube.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        _stop(proc)
    assert user["token"] not in said + proc.stderr.read()  # the kubeconfig holds it; no line shows it
    assert _left_behind(scratch) == ([], [])
