"""Pods: Created (first seen beyond Pending), Deleted, container waiting problems, non-zero
terminations, restarts (one event per container per update: containers.py), and the
transition into the Failed phase (Evicted or otherwise).

Routine updates (ready flips, IP assignment, condition timestamps) change nothing here:
the compact keeps none of those fields, and every rule compares the compacts.
Containers of a pod that is being deleted are expected to be killed (SIGTERM, then SIGKILL
after the grace period), so a terminating pod reports only its deletion.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ..model import Change, DetectContext
from .common import (
    MAX_SHORT_MESSAGE,
    born,
    clip,
    external_id,
    gone,
    happened,
    istr,
    make_change,
    meta_strings,
    old_new,
    project_labels,
    share_items,
)
from .correlation import controller_ref
from .containers import KIND, Fact, container_change, pod_data, restarted_fact, terminated_fact, waiting_fact, where

PENDING = "Pending"
FAILED = "Failed"
# Waiting reasons reported on the transition into them. The kubelet flips an image pull
# between ErrImagePull and ImagePullBackOff on every retry: one problem, one family.
WAITING_FAMILY = {"CrashLoopBackOff": "crash", "ImagePullBackOff": "image", "ErrImagePull": "image"}


class Container(NamedTuple):
    name: str
    image: str  # as written in the spec
    init: bool
    ready: bool
    restarts: int
    state: str  # "waiting" | "running" | "terminated" | "" (no status yet)
    reason: str | None  # of the current state
    message: str | None  # kept only for reported waiting reasons, clipped
    finished: str | None = None  # finishedAt of its newest termination (state, else lastState)


class Termination(NamedTuple):
    """One non-zero exit, identified by (container, container_id, finished_at)."""

    container: str
    container_id: str
    finished_at: str
    exit_code: int
    reason: str | None
    signal: int | None
    message: str | None


class PodCompact(NamedTuple):
    uid: str
    name: str
    namespace: str
    resource_version: str
    created: str | None
    deleted_at: str | None
    phase: str
    reason: str | None  # status.reason, e.g. Evicted
    message: str | None  # status.message, kept only for Failed pods
    node: str | None
    labels: tuple  # flat (k, v, ...)
    conditions: tuple  # ((type, status, reason), ...)
    containers: tuple[Container, ...]
    terminations: tuple[Termination, ...]  # non-zero exits in state / lastState
    ready_changed: str | None = None  # lastTransitionTime of ContainersReady (else Ready) when False
    started: str | None = None  # status.startTime
    seen_at: float | None = None  # epoch seconds when the connector first saw this version
    owner: tuple | None = None  # controller reference (kind, name): correlation.py resolves it


def _termination(name: str, terminated: Mapping[str, Any], into: list) -> None:
    exit_code = terminated.get("exitCode") or 0
    if exit_code:
        into.append(
            Termination(
                container=name,
                container_id=terminated.get("containerID") or "",
                finished_at=terminated.get("finishedAt") or "",
                exit_code=exit_code,
                reason=terminated.get("reason"),
                signal=terminated.get("signal"),
                message=clip(terminated.get("message"), MAX_SHORT_MESSAGE),
            )
        )


def _container(spec: Mapping[str, Any], init: bool, status: Mapping[str, Any] | None, terminations: list) -> Container:
    name = istr(spec.get("name"))
    image = istr(spec.get("image"))
    if status is None:
        return share_items(Container(name, image, init, False, 0, "", None, None))
    state = status.get("state") or {}
    kind, detail, message, finished = "", None, None, None
    if "waiting" in state:
        kind, detail = "waiting", state["waiting"] or {}
        if detail.get("reason") in WAITING_FAMILY:
            message = clip(detail.get("message"), MAX_SHORT_MESSAGE)
    elif "running" in state:
        kind = "running"
    elif "terminated" in state:
        kind, detail = "terminated", state["terminated"] or {}
        _termination(name, detail, terminations)
        finished = detail.get("finishedAt")
    last = (status.get("lastState") or {}).get("terminated")
    if last:
        _termination(name, last, terminations)
        finished = finished or last.get("finishedAt")
    reason = detail.get("reason") if detail else None
    return share_items(
        Container(
            name,
            image,
            init,
            bool(status.get("ready")),
            status.get("restartCount") or 0,
            kind,
            istr(reason) if reason else None,
            message,
            finished,
        )
    )


def project(obj: Mapping[str, Any], seen_at: float | None = None) -> PodCompact:
    meta, uid, name, namespace, resource_version = meta_strings(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    phase = istr(status.get("phase") or PENDING)
    terminations: list[Termination] = []
    containers = []
    for init, specs, statuses in (
        (True, spec.get("initContainers"), status.get("initContainerStatuses")),
        (False, spec.get("containers"), status.get("containerStatuses")),
    ):
        if specs:
            by_name = {s.get("name"): s for s in statuses} if statuses else {}
            containers += [_container(c, init, by_name.get(c.get("name")), terminations) for c in specs]
    raw_conditions = status.get("conditions") or ()
    conditions = share_items(
        tuple(
            (istr(c.get("type")), istr(c.get("status")), istr(c["reason"]) if c.get("reason") else None)
            for c in raw_conditions
        )
    )
    # When the pod stopped being ready: a True condition's transition says nothing about a failure.
    ready_changed = None
    for kind, condition_status, _ in conditions:
        if condition_status == "False" and (kind == "ContainersReady" or (kind == "Ready" and ready_changed is None)):
            ready_changed = next(c.get("lastTransitionTime") for c in raw_conditions if c.get("type") == kind)
    reason = status.get("reason")
    return PodCompact(
        uid=uid,
        name=name,
        namespace=namespace,
        resource_version=resource_version,
        created=meta.get("creationTimestamp"),
        deleted_at=meta.get("deletionTimestamp"),
        phase=phase,
        reason=istr(reason) if reason else None,
        message=clip(status.get("message")) if phase == FAILED else None,
        node=istr(spec.get("nodeName")) if spec.get("nodeName") else None,
        labels=project_labels(meta.get("labels")),
        conditions=conditions,
        containers=share_items(tuple(containers)),
        terminations=tuple(terminations),
        ready_changed=ready_changed,
        started=status.get("startTime"),
        seen_at=seen_at,
        owner=controller_ref(meta),
    )


def _beyond_pending(pod: PodCompact | None) -> bool:
    return pod is not None and pod.phase != PENDING


def detect(
    old: PodCompact | None, new: PodCompact | None, *, deleted: bool, ctx: DetectContext
) -> tuple[list[Change], PodCompact | None]:
    if deleted:
        last = new or old
        # A pod never seen beyond Pending was never reported Created: its deletion is not news.
        if last is None or not (_beyond_pending(old) or _beyond_pending(new)):
            return [], None
        return [gone(KIND, last, ctx, pod_data(last), where(last))], None
    if new is None:
        return [], old
    changes: list[Change] = []
    if _beyond_pending(new) and not _beyond_pending(old):
        previous = old.phase if old else None
        data = pod_data(new, previousPhase=previous, changed={"phase": old_new(previous, new.phase)})
        changes.append(born(KIND, new, ctx, data, where(new)))
    if new.deleted_at:
        return changes, new
    if new.phase == FAILED and (old is None or old.phase != FAILED):
        changes.append(_failed(old, new, ctx))
    facts: dict[str, list[Fact]] = {}
    before = {(c.init, c.name): c for c in old.containers} if old is not None else {}
    for container in new.containers:
        prev = before.get((container.init, container.name))
        family = WAITING_FAMILY.get(container.reason) if container.state == "waiting" else None
        if family and (prev is None or prev.state != "waiting" or WAITING_FAMILY.get(prev.reason) != family):
            facts.setdefault(container.name, []).append(waiting_fact(old, prev, container, new, ctx))
        if prev is not None and container.restarts > prev.restarts:
            facts.setdefault(container.name, []).append(restarted_fact(old, prev, container, new, ctx))
    seen = {(t.container, t.container_id, t.finished_at) for t in old.terminations} if old is not None else set()
    fresh = [t for t in new.terminations if (t.container, t.container_id, t.finished_at) not in seen]
    for t in sorted(fresh, key=lambda t: t.finished_at, reverse=True):  # the newest leads
        facts.setdefault(t.container, []).append(terminated_fact(t, new, ctx))
    if facts:
        by_name = {c.name: c for c in new.containers}
        changes += [container_change(new, by_name.get(name), found, ctx) for name, found in facts.items()]
    return changes, new


def _failed(old: PodCompact | None, new: PodCompact, ctx: DetectContext) -> Change:
    reason = "Evicted" if new.reason == "Evicted" else FAILED
    newest_exit = max((c.finished for c in new.containers if c.finished), default=None)
    verb = "was evicted" if reason == "Evicted" else "failed" + (f" ({new.reason})" if new.reason else "")
    return make_change(
        title=f"Pod {reason}: {new.name}",
        # startTime last: a pod the kubelet refuses at admission (OutOfcpu, ...) fails as it starts
        timestamp=happened((new.ready_changed, newest_exit, new.started), old=old, new=new, ctx=ctx),
        external_id=external_id(ctx, KIND, new.namespace, new.name, new.uid, reason, reason),
        namespace=new.namespace,
        kind=KIND,
        reason=reason,
        summary=f"Pod {new.name} {verb}" + (f": {new.message}" if new.message else ""),
        data=pod_data(
            new,
            reason=new.reason or reason,
            message=new.message,
            previousPhase=old.phase if old else None,
            changed={"phase": old_new(old.phase if old else None, new.phase)},
        ),
    )
