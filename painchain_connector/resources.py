"""The six watched resource types and their API paths: the one table every other list of
resources (config keys, defaults, the registration placeholder, detection) derives from.
No I/O."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    name: str  # the config key: "pods", ...
    kind: str  # "Pod", ...
    api: str  # "/api/v1" or "/apis/apps/v1"

    def path(self, namespace: str) -> str:
        """Collection path, namespaced or across all namespaces (namespace == "")."""
        if namespace:
            return f"{self.api}/namespaces/{namespace}/{self.name}"
        return f"{self.api}/{self.name}"


RESOURCE_TYPES: dict[str, ResourceType] = {
    rt.name: rt
    for rt in (
        ResourceType("pods", "Pod", "/api/v1"),
        ResourceType("deployments", "Deployment", "/apis/apps/v1"),
        ResourceType("services", "Service", "/api/v1"),
        ResourceType("statefulsets", "StatefulSet", "/apis/apps/v1"),
        ResourceType("daemonsets", "DaemonSet", "/apis/apps/v1"),
        # core/v1 Events, not events.k8s.io: the client cannot even parse the latter when
        # eventTime is null, and core/v1 carries count/lastTimestamp for coalescing.
        ResourceType("events", "Event", "/api/v1"),
    )
}
RESOURCE_NAMES: tuple[str, ...] = tuple(RESOURCE_TYPES)  # config keys, in display order
