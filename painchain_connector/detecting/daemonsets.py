"""DaemonSets: Created, Deleted and Updated (spec changes; a DaemonSet has no replicas to scale)."""
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

KIND = "DaemonSet"
# WorkloadCompact.status of a DaemonSet:
# (desiredNumberScheduled, currentNumberScheduled, numberReady, numberUnavailable)
DESIRED, CURRENT, READY, UNAVAILABLE = range(4)


def project(obj: Mapping[str, Any]) -> WorkloadCompact:
    status = obj.get("status") or {}
    counts = (
        status.get("desiredNumberScheduled") or 0,
        status.get("currentNumberScheduled") or 0,
        status.get("numberReady") or 0,
        status.get("numberUnavailable") or 0,
    )
    return project_workload(obj, scalable=False, status=counts, strategy=(obj.get("spec") or {}).get("updateStrategy"))


def detect(
    old: WorkloadCompact | None, new: WorkloadCompact | None, *, deleted: bool, ctx: DetectContext
) -> tuple[list[Change], WorkloadCompact | None]:
    return detect_workload(KIND, old, new, deleted=deleted, ctx=ctx, data=_data)


def _data(d: WorkloadCompact) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": d.name,
        "namespace": d.namespace,
        "desiredNumberScheduled": d.status[DESIRED],
        "currentNumberScheduled": d.status[CURRENT],
        "numberReady": d.status[READY],
        "numberUnavailable": d.status[UNAVAILABLE],
        "strategy": d.strategy,
    }
    listed(images_data(d.images), data, "images")
    data["labels"] = labels_dict(d.labels)
    return data
