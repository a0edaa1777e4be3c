"""#8 scale-out: how evenly and how little ownership moves, and how fast a death is covered.

- moves: integrations that change owner when N -> N+1 replicas (N = 2..10), 1,000
  integrations with cuid-like ids, against the ideal 1/(N+1) (pure rendezvous hashing).
- balance: max/mean integrations per replica, 1,000 integrations over 5 replicas, for one
  id set and over 200 random id sets (mean and 95th percentile of max/mean).
- death -> coverage: three in-process Connectors share 30 integrations through Leases on
  a real kube-apiserver (tests/envtest); one dies without a word (its greenlets stop, its
  Lease stays and expires, as after kill -9); the time until the other two have listed
  and are watching every integration again. Default lease (15 s) and a short one (3 s).
"""
from __future__ import annotations

import random
import statistics
import sys
import time
import uuid
from collections import Counter

import gevent

from bench.common import percentile
from painchain_connector.sharding.ownership import assign, moved


def _ids(rng: random.Random, count: int) -> list[str]:
    return [f"cl{rng.getrandbits(96):024x}" for _ in range(count)]


def bench_moves(*, integrations: int = 1000) -> list[dict]:
    ids = _ids(random.Random(8), integrations)
    rows = []
    for n in range(2, 11):
        before = [f"painchain-kubernetes-connector-{i}" for i in range(n)]
        after = before + [f"painchain-kubernetes-connector-{n}"]
        rows.append({"from": n, "to": n + 1, "moved": len(moved(ids, before, after)) / len(ids), "ideal": 1 / (n + 1)})
    return rows


def bench_balance(*, integrations: int = 1000, replicas: int = 5, trials: int = 200) -> dict:
    rng = random.Random(5)
    members = [f"painchain-kubernetes-connector-{i}" for i in range(replicas)]
    ratios = []
    for _ in range(trials):
        counts = Counter(assign(_ids(rng, integrations), members).values())
        ratios.append(max(counts.values()) / (integrations / replicas))
    one = Counter(assign(_ids(random.Random(8), integrations), members).values())
    return {"one_set": max(one.values()) / (integrations / replicas), "one_set_counts": sorted(one.values()),
            "mean": statistics.mean(ratios), "p95": percentile(ratios, 95), "worst": max(ratios),
            "share_within_1_15": sum(r <= 1.15 for r in ratios) / trials, "trials": trials}


class _StaticSource:
    def __init__(self, integrations) -> None:
        self.integrations = tuple(integrations)

    def fetch(self):
        from painchain_connector.sources import Fetched

        return Fetched(integrations=self.integrations)


def _covered(connectors, ids) -> bool:
    watching = set()
    for connector in connectors:
        watching |= {key.integration_id for key, r in connector.pool.running.items() if r.reflector.state == "watching"}
    return watching >= set(ids)


def bench_death(*, leases=(15, 3), integrations: int = 30) -> list[dict]:
    from painchain_connector.running import Connector
    from painchain_connector.schemas.integration import parse_integration
    from painchain_connector.settings import Settings
    from tests.envtest.controlplane import ControlPlane
    from tests.envtest.kube import Kube

    plane = ControlPlane().start(out=sys.stderr)
    kube = Kube(server=plane.server, ca_file=plane.ca_file, token=plane.admin_token)
    kubeconfig = plane.write_kubeconfig(plane.run_dir / "bench-kubeconfig", {"admin": plane.admin_token})
    results = []
    try:
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        kube.create("namespaces", None, {"metadata": {"name": namespace}})
        parsed = [parse_integration({"id": f"int-{n:02d}", "tenantId": f"t{n % 3}", "config": {
            "name": f"i{n}", "tags": [], "namespaces": [namespace], "resources": {
                "pods": False, "deployments": False, "services": True, "statefulsets": False, "daemonsets": False,
                "events": False},
            "clusters": [{"name": "envtest", "server": plane.server, "token": plane.admin_token,
                          "certificate": plane.ca_b64}]}}).integration for n in range(integrations)]
        ids = [i.id for i in parsed]
        for lease in leases:
            group = f"bench-{lease}-{uuid.uuid4().hex[:4]}"
            connectors = [Connector(Settings(backend_url="http://127.0.0.1:9/api", health_port=0,
                                             shard_lease_namespace=namespace, shard_group=group,
                                             shard_identity=f"replica-{n}", shard_kubeconfig=kubeconfig,
                                             shard_lease_seconds=lease, shard_handover_seconds=lease),
                                    source=_StaticSource(parsed), poster=lambda _event: None) for n in range(3)]
            try:
                for connector in connectors:
                    connector.start()
                deadline = time.monotonic() + 120
                while not (all(len(c.sharding.share.members) == 3 for c in connectors)
                           and not any(c.sharding.share.releasing for c in connectors) and _covered(connectors, ids)):
                    if time.monotonic() > deadline:
                        raise RuntimeError("three replicas never shared the integrations")
                    gevent.sleep(0.1)
                victim = connectors[1]
                lost = len(victim.sharding.share.owned)
                died = time.monotonic()
                victim.stop(timeout=0, hand_over=False)  # no Lease release: like kill -9
                survivors = [connectors[0], connectors[2]]
                while not _covered(survivors, ids):
                    if time.monotonic() - died > 10 * lease + 30:
                        raise RuntimeError("the dead replica's integrations were never covered again")
                    gevent.sleep(0.05)
                results.append({"lease": lease, "seconds": time.monotonic() - died, "moved": lost})
            finally:
                for connector in connectors:
                    if connector is not connectors[1]:
                        connector.stop(timeout=0, hand_over=False)
        return results
    finally:
        kube.close()
        plane.stop()


def bench_sharding(*, trials: int = 200, leases=(15, 3)) -> dict:
    return {"moves": bench_moves(), "balance": bench_balance(trials=trials), "death": bench_death(leases=leases)}
