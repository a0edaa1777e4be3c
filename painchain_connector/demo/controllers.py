"""The real controllers beside a ControlPlane: kube-controller-manager and kube-scheduler,
plus a few fake Node objects for the scheduler to bind pods to.

With them the deployment, replicaset, statefulset, daemonset, job, cronjob, garbage
collector, namespace and serviceaccount controllers write what they write in a real
cluster (ReplicaSets, pods with ownerReferences, revisions, Deployment status and
conditions) and the scheduler binds pods to the fake Nodes. No kubelet runs: whoever
uses this plays the kubelet by patching the status of the pods the controllers created.
The node lifecycle controller is off, so Nodes without heartbeats are never tainted.

Binaries: `KUBE_CONTROLLER_MANAGER_BIN` / `KUBE_SCHEDULER_BIN` override; otherwise the
build cache (build.sh builds them with kube-apiserver, and runs when one is missing). Both run as children of the
ControlPlane (same run dir, logs, PR_SET_PDEATHSIG) with the admin token's kubeconfig;
neither serves HTTP (`--port=0 --secure-port=0`). How it fails: `ControlPlaneError`
with the log tail when a binary is missing, exits at start, or the controller manager
does not create the `default` ServiceAccount (its sign of life) in time.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import requests

from .controlplane import ControlPlaneError, _executable, _plain_session, cache_dir, log_tail, run_build

CONTROLLERS = ("deployment", "replicaset", "statefulset", "daemonset", "job", "cronjob", "garbagecollector",
               "namespace", "serviceaccount")
NODE_NAMES = ("fake-node-1", "fake-node-2")
PROCESSES = ("kube-scheduler", "kube-controller-manager")


def find_binary(name: str) -> Path:
    override = os.environ.get(name.upper().replace("-", "_") + "_BIN")
    if override:
        return _executable(Path(override), f"{name.upper().replace('-', '_')}_BIN")
    binary = cache_dir() / "bin" / name
    if not os.access(binary, os.X_OK):
        run_build()  # a cache from before the controllers: builds only what is missing
    return _executable(binary, "the build result")


def start_controllers(cp, *, timeout: float = 60.0) -> None:
    """Start the controller manager and the scheduler against the running `cp`, create
    the fake Nodes, and return once the controller manager acts."""
    kcm, scheduler = find_binary("kube-controller-manager"), find_binary("kube-scheduler")
    kubeconfig = cp.write_kubeconfig(cp.run_dir / "controllers.kubeconfig", {"admin": cp.admin_token})
    common = [f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--port=0", "--secure-port=0", "--v=1"]
    cp._spawn("kube-controller-manager", [
        str(kcm), *common,
        f"--controllers={','.join(CONTROLLERS)}",
        "--use-service-account-credentials=false",
        "--controller-start-interval=0s",
        # Namespaces of finished tests go away for real; a short resync keeps it quick.
        "--namespace-sync-period=30s",
        "--concurrent-deployment-syncs=5", "--concurrent-replicaset-syncs=5",
    ])
    cp._spawn("kube-scheduler", [str(scheduler), *common])
    session = _plain_session()
    headers = {"Authorization": f"Bearer {cp.admin_token}"}
    for name in NODE_NAMES:
        _create_node(session, cp, headers, name)
    deadline = time.monotonic() + timeout
    while True:
        for name in PROCESSES:
            proc = cp._procs[name]
            if proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited with rc={proc.returncode} while starting; "
                                        f"{cp.run_dir / (name + '.log')}:\n{log_tail(cp.run_dir / (name + '.log'))}")
        try:
            answer = session.get(f"{cp.server}/api/v1/namespaces/default/serviceaccounts/default",
                                 headers=headers, verify=cp.ca_file, timeout=2)
            if answer.status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"kube-controller-manager did not act within {timeout:.0f}s:\n"
                                    f"{log_tail(cp.run_dir / 'kube-controller-manager.log')}")
        time.sleep(0.2)


def _create_node(session: requests.Session, cp, headers: dict, name: str) -> None:
    """A Node the scheduler accepts: Ready, room for 110 pods, no taints."""
    resources = {"cpu": "8", "memory": "32Gi", "pods": "110"}
    body = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}}}
    url = f"{cp.server}/api/v1/nodes"
    answer = session.post(url, json=body, headers=headers, verify=cp.ca_file, timeout=10)
    if answer.status_code not in (201, 409):
        raise ControlPlaneError(f"creating node {name}: {answer.status_code} {answer.text[:300]}")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"status": {"capacity": resources, "allocatable": resources,
                         "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                         "message": "fake node", "lastHeartbeatTime": now,
                                         "lastTransitionTime": now}]}}
    patch = {**headers, "Content-Type": "application/merge-patch+json"}
    answer = session.patch(f"{url}/{name}/status", json=status, verify=cp.ca_file, timeout=10, headers=patch)
    if answer.status_code != 200:
        raise ControlPlaneError(f"node {name} status: {answer.status_code} {answer.text[:300]}")
    # The TaintNodesByCondition admission plugin taints every new Node not-ready; only the
    # node lifecycle controller (off here: no kubelet heartbeats) would lift it.
    answer = session.patch(f"{url}/{name}", json={"spec": {"taints": None}}, verify=cp.ca_file, timeout=10,
                           headers=patch)
    if answer.status_code != 200:
        raise ControlPlaneError(f"node {name} taints: {answer.status_code} {answer.text[:300]}")
