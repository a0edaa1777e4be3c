"""StatefulSets: Created, Deleted, Scaled (spec.replicas) and Updated (any other spec change)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import Change, DetectContext
from .common import (
    WorkloadCompact,
    images_data,
    labels_dict,
    detect_workload,
    listed,
    project_workload,
)

KIND = "StatefulSet"
# WorkloadCompact.status of a StatefulSet: (readyReplicas, currentReplicas, updatedReplicas)
READY, CURRENT, UPDATED = range(3)


def project(obj: Mapping[str, Any]) -> WorkloadCompact:
    status = obj.get("status") or {}
    counts = (status.get("readyReplicas") or 0, status.get("currentReplicas") or 0, status.get("updatedReplicas") or 0)
    return project_workload(obj, scalable=True, status=counts, strategy=(obj.get("spec") or {}).get("updateStrategy"))


def detect(
    old: WorkloadCompact | None, new: WorkloadCompact | None, *, deleted: bool, ctx: DetectContext
) -> tuple[list[Change], WorkloadCompact | None]:
    return detect_workload(KIND, old, new, deleted=deleted, ctx=ctx, data=_data)


def _data(s: WorkloadCompact) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": s.name,
        "namespace": s.namespace,
        "replicas": {
            "desired": s.replicas,
            "ready": s.status[READY],
            "current": s.status[CURRENT],
            "updated": s.status[UPDATED],
        },
        "strategy": s.strategy,
    }
    listed(images_data(s.images), data, "images")
    data["labels"] = labels_dict(s.labels)
    return data
