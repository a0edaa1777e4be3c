"""Services: Created and Deleted only (a Service's later edits are not reported)."""
from __future__ import annotations

from typing import Any

from ..model import Change, DetectContext
from ..objects import Service
from .common import (
    Compact,
    istr,
    labels_dict,
    lifecycle,
    listed,
    project_labels,
    share_items,
)

KIND = "Service"


class ServiceCompact(Compact):
    uid: str
    name: str
    namespace: str
    resource_version: str
    created: str | None
    deleted_at: str | None
    type: str
    cluster_ip: str | None
    ports: tuple  # ((name, port, targetPort, protocol, nodePort), ...)
    labels: tuple
    seen_at: float | None = None  # epoch seconds when the connector first saw this version
    owners: tuple = ()  # correlation.field_owners: (creator, ...) field managers


def project(obj: Service, seen_at: float | None = None) -> ServiceCompact:
    meta, spec = obj.metadata, obj.spec
    ports = share_items(
        tuple((p.name, p.port, p.target_port, istr(p.protocol or "TCP"), p.node_port) for p in spec.ports or ())
    )
    return ServiceCompact(
        uid=meta.uid or "",
        name=meta.name or "",
        namespace=istr(meta.namespace),
        resource_version=meta.resource_version or "",
        created=meta.creation_timestamp,
        deleted_at=meta.deletion_timestamp,
        type=istr(spec.type or "ClusterIP"),
        cluster_ip=spec.cluster_ip,
        ports=ports,
        labels=project_labels(meta.labels),
        seen_at=seen_at,
    )


def detect(
    old: ServiceCompact | None, new: ServiceCompact | None, *, deleted: bool, ctx: DetectContext
) -> tuple[list[Change], ServiceCompact | None]:
    outcome = lifecycle(KIND, old, new, deleted=deleted, ctx=ctx, data=_data, describe=_describe)
    return outcome if outcome is not None else ([], new)


def _data(service: ServiceCompact) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": service.name,
        "namespace": service.namespace,
        "type": service.type,
        "clusterIP": service.cluster_ip,
    }
    listed(
        (
            {key: value for key, value in (("name", name), ("port", port), ("targetPort", target), ("protocol", protocol),
                                           ("nodePort", node_port)) if value is not None and value != ""}
            for name, port, target, protocol, node_port in service.ports
        ),
        data,
        "ports",
        _port_words,
    )
    data["labels"] = labels_dict(service.labels)
    return data


def _port_words(p: dict[str, Any]) -> str:
    """'http 80→8080/TCP (node 30080)'."""
    target = f"→{p['targetPort']}" if p.get("targetPort") not in (None, p.get("port")) else ""
    node = f" (node {p['nodePort']})" if p.get("nodePort") else ""
    return (f"{p['name']} " if p.get("name") else "") + f"{p.get('port', '?')}{target}/{p['protocol']}{node}"


def _describe(service: ServiceCompact) -> str:
    """'ClusterIP 10.96.0.12, 2 ports'."""
    ports = f", {len(service.ports)} port{'s' if len(service.ports) != 1 else ''}" if service.ports else ""
    return service.type + (f" {service.cluster_ip}" if service.cluster_ip else "") + ports
