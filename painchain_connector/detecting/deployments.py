"""Deployments: Created, Deleted, Scaled, Updated, and each rollout's outcome (stuck / complete).

Status-only churn (readyReplicas 1 → 2 → 3, a pod dying and coming back) reports
nothing: the outcome rules need a spec change first, and the state returned by `detect`
carries forward which generation's outcome is already known (`done_generation`).
"""
from __future__ import annotations

from typing import Any

from ..model import Change, DetectContext
from ..objects import Workload
from .common import born, external_id, happened, istr, lifecycle, make_change
from .workloads import WorkloadCompact, describe, project_workload, spec_changes, workload_data

KIND = "Deployment"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
# WorkloadCompact.status of a Deployment: (readyReplicas, availableReplicas, updatedReplicas, replicas)
READY, AVAILABLE, UPDATED, CURRENT = range(4)


def project(obj: Workload, seen_at: float | None = None) -> WorkloadCompact:
    spec = obj.spec or {}
    status = obj.status
    progressing = None
    for condition in status.conditions or ():
        if condition.type == "Progressing":
            progressing = (
                istr(condition.status),
                istr(condition.reason),
                condition.last_transition_time,
                condition.last_update_time,
            )
    counts = (
        status.ready_replicas or 0,
        status.available_replicas or 0,
        status.updated_replicas or 0,
        status.replicas or 0,
    )
    generation = obj.metadata.generation or 0
    observed = status.observed_generation or 0
    replicas = spec.get("replicas", 1)
    # A baseline whose latest rollout already finished must not report it again later.
    finished = observed >= generation and (
        (progressing is not None and progressing[1] == NEW_RS_AVAILABLE)
        or counts[UPDATED] == counts[AVAILABLE] == counts[CURRENT] == replicas
    )
    return project_workload(
        obj,
        scalable=True,
        status=counts,
        strategy=spec.get("strategy"),
        observed_generation=observed,
        progressing=progressing,
        done_generation=generation if finished else 0,
        seen_at=seen_at,
    )


def _complete(d: WorkloadCompact) -> bool:
    """Like `kubectl rollout status`: every replica updated and available, no old ones left."""
    return (
        d.observed_generation >= d.generation
        and d.status[UPDATED] == d.status[AVAILABLE] == d.status[CURRENT] == d.replicas
    )


def _stuck(d: WorkloadCompact | None) -> bool:
    return d is not None and d.progressing is not None and d.progressing[:2] == ("False", DEADLINE_EXCEEDED)


def detect(
    old: WorkloadCompact | None, new: WorkloadCompact | None, *, deleted: bool, ctx: DetectContext
) -> tuple[list[Change], WorkloadCompact | None]:
    if deleted or new is None:
        return lifecycle(KIND, old, new, deleted=deleted, ctx=ctx, data=_data, describe=describe)
    changes: list[Change] = []
    if old is None:
        changes.append(born(KIND, new, ctx, _data(new), describe(new)))
        done = 0  # new to us: its first rollout is news
    else:
        changes += spec_changes(KIND, old, new, ctx, _data(new))
        done = old.done_generation
        if old.fingerprint == new.fingerprint and new.generation > old.generation and done >= old.generation:
            done = new.generation  # scaling (or an annotation of the object) starts no rollout
    if _stuck(new) and not _stuck(old):
        changes.append(_outcome(old, new, ctx, "RolloutStuck", "Rollout Stuck", new.progressing[2]))
    if _complete(new) and done < new.generation:
        finished_at = new.progressing[3] if new.progressing and new.progressing[1] == NEW_RS_AVAILABLE else None
        changes.append(_outcome(old, new, ctx, "RolloutComplete", "Rollout Complete", finished_at))
        done = new.generation
    return changes, (new if done == new.done_generation else new._replace(done_generation=done))


def _outcome(
    old: WorkloadCompact | None, d: WorkloadCompact, ctx: DetectContext, reason: str, words: str, stamp: str | None
) -> Change:
    status, why = (d.progressing or (None, None, None, None))[:2]
    counts = f"{d.status[UPDATED]}/{d.replicas} updated, {d.status[AVAILABLE]} available"
    return make_change(
        title=f"Deployment {words}: {d.name}",
        timestamp=happened((stamp,), old=old, new=d, ctx=ctx),
        external_id=external_id(ctx, KIND, d.namespace, d.name, d.uid, reason, d.generation),
        namespace=d.namespace,
        kind=KIND,
        reason=reason,
        summary=f"Deployment {d.name} {words.lower()} at generation {d.generation}"
        + (f" ({why})" if why else "") + f": {counts}",
        data={"reason": why or reason, **_data(d), "progressing": status},
    )


def _data(d: WorkloadCompact) -> dict[str, Any]:
    return workload_data(
        d, {"readyReplicas": d.status[READY], "availableReplicas": d.status[AVAILABLE], "updatedReplicas": d.status[UPDATED]}
    )
