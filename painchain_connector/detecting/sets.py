"""StatefulSets and DaemonSets: Created, Deleted, Scaled (spec.replicas; StatefulSets only) and
Updated (any other spec change). One rule set, two kinds: they differ only in the status
counts they carry and in whether they have replicas to scale.
"""
from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

from ..model import Change, DetectContext
from ..objects import Workload
from .workloads import WorkloadCompact, detect_workload, project_workload, workload_data


@functools.cache
def _attributes(counts: tuple[str, ...]) -> tuple[str, ...]:
    """The counts' attribute names on objects.WorkloadStatus (readyReplicas: ready_replicas)."""
    return tuple(re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in counts)


class SetKind(NamedTuple):
    """One kind's differences; `counts` are status fields, kept in WorkloadCompact.status in order."""

    kind: str
    scalable: bool
    counts: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return _attributes(self.counts)

    def project(self, obj: Workload, seen_at: float | None = None) -> WorkloadCompact:
        status = obj.status
        return project_workload(
            obj,
            scalable=self.scalable,
            status=tuple(getattr(status, name) or 0 for name in self.fields),
            strategy=(obj.spec or {}).get("updateStrategy"),
            strategy_key="updateStrategy",
            seen_at=seen_at,
        )

    def detect(
        self, old: WorkloadCompact | None, new: WorkloadCompact | None, *, deleted: bool, ctx: DetectContext
    ) -> tuple[list[Change], WorkloadCompact | None]:
        return detect_workload(self.kind, old, new, deleted=deleted, ctx=ctx, data=self.data)

    def data(self, s: WorkloadCompact) -> dict[str, Any]:
        return workload_data(s, dict(zip(self.counts, s.status)))


STATEFULSETS = SetKind("StatefulSet", True, ("readyReplicas", "currentReplicas", "updatedReplicas"))
DAEMONSETS = SetKind(
    "DaemonSet", False, ("desiredNumberScheduled", "currentNumberScheduled", "numberReady", "numberUnavailable")
)
