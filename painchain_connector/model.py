"""Plain values that cross module boundaries: what is watched, what was detected, what is sent.

No behaviour and no I/O here; every other module depends on these shapes only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

# The namespace placeholder of a WatchKey that watches all namespaces.
ALL_NAMESPACES = ""
# The namespace part of ids and projects for cluster-scoped objects ("<cluster>:_cluster").
CLUSTER_SCOPE = "_cluster"


@dataclass(frozen=True, order=True)
class WatchKey:
    """One list+watch stream: an integration's cluster, one resource, one namespace (or all)."""

    integration_id: str
    cluster: str
    resource: str  # one of resources.RESOURCE_NAMES
    namespace: str = ALL_NAMESPACES

    def __str__(self) -> str:
        return f"{self.integration_id}/{self.cluster}/{self.resource}/{self.namespace or '*'}"

    def log_context(self) -> dict[str, str]:
        return {
            "integration": self.integration_id,
            "cluster": self.cluster,
            "resource": self.resource,
            "namespace": self.namespace or "*",
        }


@dataclass(frozen=True)
class DetectContext:
    """What detection may know besides the objects themselves (no clock reads in detection)."""

    cluster: str
    observed_at: datetime  # when the change was observed (UTC); fallback timestamp only
    event_repeat_window: float = 300.0  # seconds; repeats of one k8s Event inside it are coalesced
    rollout_window: float = 900.0  # seconds; a pod failure this soon after a rollout names it
    correlation: Any = None  # detecting.correlation.CorrelationView of the cluster (owners, rollouts)


@dataclass(frozen=True)
class Change:
    """One significant change, as detection sees it: before integration routing is added."""

    title: str
    timestamp: datetime  # when it HAPPENED (UTC, tz-aware)
    external_id: str  # deterministic: same change observed twice -> same id
    namespace: str | None  # None for cluster-scoped objects -> project "<cluster>:_cluster"
    kind: str  # "Pod", "Deployment", ..., "Event"
    reason: str  # "Created", "Deleted", "CrashLoopBackOff", "Scaled", ...
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """Where a change of one WatchKey goes: which integration, tenant and tags."""

    integration_id: str
    tenant_id: str | None
    cluster: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outgoing:
    """A serialized PainChain event plus the routing the outbox needs (tenant header)."""

    tenant_id: str | None
    integration_id: str
    external_id: str
    # The PainChainEvent document as posted: UTF-8 JSON, encoded once when detected (bytes
    # are also a fraction of the memory a dict of it would hold while queued).
    payload: bytes
    kind: str = ""
    cluster: str = ""

    @property
    def body(self) -> dict[str, Any]:
        """The document decoded, for readers (the demo console, tests); delivery never decodes."""
        return json.loads(self.payload)
