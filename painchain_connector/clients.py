"""One kubernetes ApiClient per cluster credential set, shared by the watches using it.

`ClientCache` (owned by the WatchPool) builds a client the first time a credential set is
wanted (tenant clusters through the egress policy: clusters.build_api_client), counts the
watches and integrations using it, closes it with the last of them, and has one connection
test run per new client in a greenlet of the pool's (`spawn_check`): its outcome is logged
naming every integration sharing those credentials, and no failure kills that greenlet.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from ._log import logger
from .clusters import ApiError, build_api_client, check_connection
from .logs import redact
from .schemas.integration import Cluster


class ClientCache:
    """One ApiClient per credential set, reference-counted by the watches using it."""

    def __init__(self, *, connect_timeout: float, spawn_check: Callable[..., object], egress=None) -> None:
        self.connect_timeout = connect_timeout
        self.egress = egress
        self._clients: dict[str, list] = {}  # fingerprint -> [api, refcount, {integration id: watches}]
        self._warned_insecure: set[str] = set()
        self._spawn_check = spawn_check

    def acquire(self, cluster: Cluster, *, label: str, integration_id: str = ""):
        fp = cluster.credential_fingerprint
        entry = self._clients.get(fp)
        if entry is None:
            api = build_api_client(cluster, connect_timeout=self.connect_timeout, egress=self.egress)
            if cluster.skip_tls_verify and fp not in self._warned_insecure:
                self._warned_insecure.add(fp)
                logger.warning("{}: skipTLSVerify is on: the API server's identity is NOT verified", label)
            entry = self._clients[fp] = [api, 0, Counter()]
            # Runs after this adjust() has acquired for every integration sharing the client.
            self._spawn_check(self._check, entry, cluster.name)
        entry[1] += 1
        entry[2][integration_id] += 1
        return entry[0]

    def release(self, cluster: Cluster, *, integration_id: str = "") -> None:
        fp = cluster.credential_fingerprint
        entry = self._clients.get(fp)
        if entry is None:
            return
        entry[1] -= 1
        entry[2][integration_id] -= 1
        if entry[2][integration_id] <= 0:
            del entry[2][integration_id]
        if entry[1] <= 0:
            del self._clients[fp]
            entry[0].close()

    def _check(self, entry: list, cluster_name: str) -> None:
        label = f"cluster {cluster_name!r} of {_integrations(entry[2])}"
        try:
            version = check_connection(entry[0], connect_timeout=self.connect_timeout)
            logger.info("{}: connection test passed (Kubernetes {})", label, version)
        except ApiError as exc:
            logger.error("{}: connection test failed: {}", label, exc)
        except Exception as exc:  # noqa: BLE001 - any failure is a failed test, not a dead greenlet
            logger.error("{}: connection test failed: {}", label, redact(f"{type(exc).__name__}: {exc}"))

    def __len__(self) -> int:
        return len(self._clients)


def _integrations(users: Counter, *, most: int = 5) -> str:
    """'integration a', or '3 integrations (a, b, c)': every integration sharing a client."""
    ids = sorted(users)
    if len(ids) == 1:
        return f"integration {ids[0]}"
    named = ", ".join(ids[:most]) + (f", +{len(ids) - most} more" if len(ids) > most else "")
    return f"{len(ids)} integrations ({named})"
