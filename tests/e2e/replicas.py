"""Connector replicas as real processes for the scale-out tests, and what they watch.

`ReplicaSet` starts `python -m painchain_connector` processes sharing one Lease group in
the test apiserver (SHARD_*), each with its own health port, log file and STATE_DIR. What
a replica watches is read from its own endpoints: `painchain_shard_watched{integration}`
(METRICS_PER_INTEGRATION=true) minus the integrations `/readyz` still lists as not ready.
`Changes` writes a Service every `period` seconds from a greenlet (the test owns it).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import gevent
import requests

from tests.e2e.helpers import integration_doc, only
from tests.envtest.builders import make_service
from tests.envtest.controlplane import free_port
from tests.envtest.fixtures import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


class Replica:
    def __init__(self, identity: str, *, env: dict, workdir: Path) -> None:
        self.identity, self.env, self.workdir = identity, env, workdir
        self.port = free_port()
        self.state_dir = workdir / identity
        self.log_path = workdir / f"{identity}.log"
        self.proc: subprocess.Popen | None = None
        self.http = _http()

    def start(self) -> "Replica":
        env = dict(self.env, SHARD_IDENTITY=self.identity, HEALTH_PORT=str(self.port), STATE_DIR=str(self.state_dir))
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "painchain_connector"], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def _get(self, path: str):
        try:
            return self.http.get(f"http://127.0.0.1:{self.port}{path}", timeout=3)
        except requests.RequestException:
            return None

    def watched(self) -> set[str] | None:
        """Integrations this replica watches and has listed; None when it does not answer."""
        if not self.alive:
            return set()
        metrics, ready = self._get("/metrics"), self._get("/readyz")
        if metrics is None or ready is None:
            return None
        ids = set()
        for line in metrics.text.splitlines():
            if line.startswith("painchain_shard_watched{") and line.rsplit(" ", 1)[1] != "0.0":
                ids.add(line.split('integration="', 1)[1].split('"', 1)[0])
        not_ready = {key.rsplit("/", 1)[0] for key in (ready.json().get("not_ready") or {})}
        return ids - not_ready

    def sample(self, name: str) -> float:
        metrics = self._get("/metrics")
        for line in (metrics.text if metrics is not None else "").splitlines():
            if line.split(" ", 1)[0] == name:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self.alive:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.http.close()
        if getattr(self, "log", None):
            self.log.close()


class ReplicaSet:
    """Replicas of one Lease group; `coverage()` maps integration -> replicas watching it."""

    def __init__(self, *, backend, kubeconfig: str, namespace: str, workdir: Path, lease: int = 3,
                 handover: float = 3.0, **extra_env) -> None:
        self.group = f"g-{uuid.uuid4().hex[:6]}"
        env = {k: v for k, v in os.environ.items() if k not in ("BACKEND_API_URL", "KUBECONFIG")}
        env.update(PYTHONPATH=str(ROOT), BACKEND_API_URL=backend.url, RESYNC_INTERVAL="2", HEALTH_HOST="127.0.0.1",
                   SHARD_LEASE_NAMESPACE=namespace, SHARD_GROUP=self.group, SHARD_KUBECONFIG=kubeconfig,
                   SHARD_LEASE_SECONDS=str(lease), SHARD_HANDOVER_SECONDS=str(handover),
                   METRICS_PER_INTEGRATION="true", STATE_FLUSH_INTERVAL="1", WATCH_TIMEOUT="30", DRAIN_TIMEOUT="3",
                   LOG_LEVEL="INFO", ALLOWED_SERVER_NETWORKS="127.0.0.0/8")
        env.update({k: str(v) for k, v in extra_env.items()})
        self.env, self.workdir, self.lease, self.handover = env, workdir, lease, handover
        self.replicas: dict[str, Replica] = {}

    def start(self, identity: str, **env) -> Replica:
        replica = self.replicas.get(identity)
        if replica is not None:
            if replica.alive:
                raise RuntimeError(f"{identity} is running")
            replica.close()
        replica = Replica(identity, env={**self.env, **{k: str(v) for k, v in env.items()}}, workdir=self.workdir)
        self.replicas[identity] = replica.start()
        return replica

    def running(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.alive]

    def coverage(self) -> dict[str, set[str]] | None:
        """integration -> identities watching it (None while a replica does not answer)."""
        seen: dict[str, set[str]] = {}
        for replica in self.running():
            watched = replica.watched()
            if watched is None:
                return None
            for integration_id in watched:
                seen.setdefault(integration_id, set()).add(replica.identity)
        return seen

    def steady(self, ids) -> dict[str, str] | None:
        """integration -> its one watcher, when every integration has exactly one; else None."""
        coverage = self.coverage()
        if coverage is None or set(coverage) != set(ids) or any(len(w) != 1 for w in coverage.values()):
            return None
        return {i: next(iter(w)) for i, w in coverage.items()}

    def logs(self) -> str:
        return "\n".join(f"--- {r.identity}\n{r.log_text()[-3000:]}" for r in self.replicas.values())

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.close()


def add_integrations(backend, control_plane, namespace, *, count: int, tenants: int, server: str | None = None
                     ) -> list[str]:
    ids = []
    for n in range(count):
        integration_id, tenant = f"int-{n:02d}", f"tenant-{n % tenants}"
        doc = integration_doc(id=integration_id, tenant=tenant, server=server or control_plane.server,
                              token=control_plane.admin_token, ca_b64=control_plane.ca_b64,
                              namespaces=[namespace], resources=only("services"))
        backend.add_integration(integration_id, tenant_id=tenant, config=doc["config"])
        ids.append(integration_id)
    return ids


class Changes:
    """Creates Service `<prefix>-N` every `period` seconds until stopped; `names` are done."""

    def __init__(self, kube, namespace: str, *, prefix: str = "chg", period: float = 1.0) -> None:
        self.kube, self.namespace, self.prefix, self.period = kube, namespace, prefix, period
        self.names: list[str] = []
        self._greenlet: gevent.Greenlet | None = None

    def make(self, name: str | None = None) -> str:
        name = name or f"{self.prefix}-{len(self.names)}"
        self.kube.create("services", self.namespace, make_service(name))
        self.names.append(name)
        return name

    def _run(self) -> None:
        while True:
            started = time.monotonic()
            self.make()
            gevent.sleep(max(0.0, self.period - (time.monotonic() - started)))

    def start(self) -> "Changes":
        self._greenlet = gevent.spawn(self._run)
        self._greenlet.name = "test:changes"
        return self

    def stop(self) -> list[str]:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=5)
        return list(self.names)


def missing(backend, ids, names) -> dict[str, list[str]]:
    """integration -> the 'Service Created' titles it has not received yet."""
    gaps = {}
    for integration_id in ids:
        titles = {e["title"] for e in backend.events_for(integration_id)}
        lacking = [n for n in names if f"Service Created: {n}" not in titles]
        if lacking:
            gaps[integration_id] = lacking
    return gaps


def wait_steady(replicas: ReplicaSet, ids, count: int, timeout: float = 60) -> dict[str, str]:
    """Waits until `count` replicas run and every integration is watched by exactly one of
    them, each replica watching some; returns integration -> owner."""
    return wait_for(lambda: len(replicas.running()) == count and (s := replicas.steady(ids))
                    and len(set(s.values())) == count and s,
                    timeout=timeout, interval=0.25,
                    message=f"every integration watched by exactly one of {count} replicas: {replicas.coverage()}")


def wait_delivered(backend, ids, names, timeout: float = 40) -> None:
    wait_for(lambda: not missing(backend, ids, names), timeout=timeout, interval=0.25,
             message=f"every change at every integration; missing {missing(backend, ids, names)}")
