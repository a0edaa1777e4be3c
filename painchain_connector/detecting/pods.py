"""Pods: Created (first seen beyond Pending), Deleted, container waiting problems, non-zero
terminations, restarts (one event per container per update: containers.py), and the
transition into the Failed phase (Evicted or otherwise).

Routine updates (ready flips, IP assignment, condition timestamps) change nothing here:
the compact keeps none of those fields, and every rule compares the compacts.
Containers of a pod that is being deleted are expected to be killed (SIGTERM, then SIGKILL
after the grace period), so a terminating pod reports only its deletion.
"""
from __future__ import annotations

import sys

from ..model import Change, DetectContext
from ..objects import ContainerSpec, ContainerStatus, Pod, Terminated
from .common import (
    MAX_SHORT_MESSAGE,
    Compact,
    born,
    clip,
    external_id,
    gone,
    happened,
    istr,
    make_change,
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
intern = sys.intern
WAITING_FAMILY = {"CrashLoopBackOff": "crash", "ImagePullBackOff": "image", "ErrImagePull": "image"}


class Container(Compact):
    name: str
    image: str  # as written in the spec
    init: bool
    ready: bool
    restarts: int
    state: str  # "waiting" | "running" | "terminated" | "" (no status yet)
    reason: str | None  # of the current state
    message: str | None  # kept only for reported waiting reasons, clipped
    finished: str | None = None  # finishedAt of its newest termination (state, else lastState)


class Termination(Compact):
    """One non-zero exit, identified by (container, container_id, finished_at)."""

    container: str
    container_id: str
    finished_at: str
    exit_code: int
    reason: str | None
    signal: int | None
    message: str | None


class PodCompact(Compact):
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


def _termination(name: str, terminated: Terminated, into: list) -> None:
    if terminated.exit_code:
        into.append(
            Termination(
                name,
                terminated.container_id or "",
                terminated.finished_at or "",
                terminated.exit_code,
                terminated.reason,
                terminated.signal,
                clip(terminated.message, MAX_SHORT_MESSAGE),
            )
        )


def _container(spec: ContainerSpec, init: bool, status: ContainerStatus | None, terminations: list) -> Container:
    name = spec.name or ""
    if status is None:
        image = spec.image or ""
        return _shared(Container(name, image, init, False, 0, "", None, None, None)) or share_items(
            Container(intern(name), intern(image), init, False, 0, "", None, None, None))
    state = status.state
    kind, reason, message, finished = "", None, None, None
    if state is not None:
        if state.waiting is not None:
            kind, reason = "waiting", state.waiting.reason
            if reason in WAITING_FAMILY:
                message = clip(state.waiting.message, MAX_SHORT_MESSAGE)
        elif state.running is not None:
            kind = "running"
        elif state.terminated is not None:
            kind, reason = "terminated", state.terminated.reason
            _termination(name, state.terminated, terminations)
            finished = state.terminated.finished_at
    last = status.last_state
    if last is not None and last.terminated is not None:
        _termination(name, last.terminated, terminations)
        finished = finished or last.terminated.finished_at
    # Shared: the canonical instance holds the strings (the replicas of a workload in the
    # same state are one object; a frozen Struct hashes in C).
    image, ready, restarts = spec.image or "", bool(status.ready), status.restart_count or 0
    found = _shared(Container(name, image, init, ready, restarts, kind, reason or None, message, finished))
    if found is None:  # new: its strings interned, so the pods that differ from it share them
        found = share_items(Container(intern(name), intern(image), init, ready, restarts, kind,
                                      intern(reason) if reason else None, message, finished))
    return found


_shared = share_items._table.get  # the hit, without Shared.__call__ (the projection runs per event)


def project(obj: Pod, seen_at: float | None = None) -> PodCompact:
    meta, spec, status = obj.metadata, obj.spec, obj.status
    phase = intern(status.phase or PENDING)
    terminations: list[Termination] = []
    containers = []
    for init, specs, statuses in (
        (True, spec.init_containers, status.init_container_statuses),
        (False, spec.containers, status.container_statuses),
    ):
        if specs:
            if statuses:
                by_name = {s.name: s for s in statuses}
                containers += [_container(c, init, by_name.get(c.name), terminations) for c in specs]
            else:
                containers += [_container(c, init, None, terminations) for c in specs]
    raw_conditions = status.conditions or ()
    # When the pod stopped being ready: a True condition's transition says nothing about a failure.
    ready_changed = None
    conditions = []
    for c in raw_conditions:
        conditions.append((c.type or "", c.status or "", c.reason or None))
        if c.status == "False" and (c.type == "ContainersReady" or (c.type == "Ready" and ready_changed is None)):
            ready_changed = c.last_transition_time
    conditions = tuple(conditions)
    conditions = _shared(conditions) or share_items(conditions)
    containers = tuple(containers)
    containers = _shared(containers) or share_items(containers)
    reason = status.reason
    node = spec.node_name
    started = status.start_time
    created = meta.creation_timestamp
    return PodCompact(
        meta.uid or "",
        meta.name or "",
        istr(meta.namespace),
        meta.resource_version or "",
        created,
        meta.deletion_timestamp,
        phase,
        intern(reason) if reason else None,
        clip(status.message) if phase == FAILED else None,  # message
        intern(node) if node else None,
        project_labels(meta.labels),
        conditions,
        containers,
        tuple(terminations),
        ready_changed,
        created if started == created else started,  # one string when equal (a pod started in its second)
        seen_at,
        controller_ref(meta),
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
    if old is not None and new.containers is old.containers and new.terminations == old.terminations:
        return changes, new  # containers are shared canonical tuples: the same one, no container news
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
