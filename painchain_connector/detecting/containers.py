"""One event per container per observed pod update, and the data every pod event carries.

One observed update of one container can carry several facts (it exited 1, its restart
count went up, it now waits in CrashLoopBackOff): they become ONE event, titled and
identified (externalId) by the most severe fact, with every fact in its data. Another
container of the same pod is another event. Pure, like all of detection.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ..model import Change, DetectContext
from .common import and_join, external_id, happened, labels_dict, listed, make_change, old_new, when

if TYPE_CHECKING:
    from .pods import Container, PodCompact, Termination

KIND = "Pod"


class Fact(NamedTuple):
    severity: int  # lower is more severe: it titles and identifies the merged event
    order: int  # place in the summary: what happened first comes first
    reason: str
    title: str
    discriminators: tuple  # of the externalId: the same fact observed twice gets the same id
    stamp: datetime
    words: str  # "exited with code 1 (Error)": the summary is "Container main of pod x " + every fact's words
    fields: dict  # top-level data fields
    changed: dict  # entries of data["changed"]


WAITING, TERMINATED, RESTARTED = 0, 1, 2  # severities: a container that cannot run now leads


def waiting_fact(old: PodCompact | None, prev: Container | None, c: Container, pod: PodCompact, ctx: DetectContext) -> Fact:
    return Fact(
        severity=WAITING,
        order=2,
        reason=c.reason,
        title=f"Pod {c.reason}: {pod.name}",
        discriminators=(c.name, c.restarts),
        # A crash loop began when the container died; no object time says when an image pull
        # failed (startTime or a readiness change would predate it): that is its observation.
        stamp=happened((c.finished, pod.ready_changed) if c.reason == "CrashLoopBackOff" else (),
                       old=old, new=pod, ctx=ctx),
        words=f"is waiting in {c.reason}" + (f": {c.message}" if c.message else ""),
        fields={"reason": c.reason, "message": c.message},
        changed={"waitingReason": old_new(prev.reason if prev else None, c.reason)},
    )


def restarted_fact(old: PodCompact, prev: Container, c: Container, pod: PodCompact, ctx: DetectContext) -> Fact:
    return Fact(
        severity=RESTARTED,
        order=1,
        reason="Restarted",
        title=f"Pod Restarted: {pod.name} (restarts {prev.restarts} → {c.restarts})",
        discriminators=(c.name, c.restarts),
        stamp=happened((c.finished, pod.ready_changed), old=old, new=pod, ctx=ctx),
        words=f"restarted ({prev.restarts} → {c.restarts} restarts)",
        fields={"reason": "Restarted", "previousRestartCount": prev.restarts},
        changed={"restartCount": old_new(prev.restarts, c.restarts)},
    )


def terminated_fact(t: Termination, pod: PodCompact, ctx: DetectContext) -> Fact:
    short_id = t.container_id.rpartition("://")[2][:12] or "-"
    detail = f"exit {t.exit_code}" + (f", {t.reason}" if t.reason else "")
    return Fact(
        severity=TERMINATED,
        order=0,
        reason="Terminated",
        title=f"Pod Container Terminated: {pod.name} ({t.container}: {detail})",
        discriminators=(t.container, short_id, t.finished_at or "-"),
        stamp=when(t.finished_at, ctx, pod),  # a termination new to us: finishedAt is its own time
        words=f"exited with code {t.exit_code}" + (f" ({t.reason})" if t.reason else "")
        + (f" on signal {t.signal}" if t.signal else ""),
        fields={
            "reason": t.reason or "Terminated",
            "exitCode": t.exit_code,
            "terminationReason": t.reason,
            "signal": t.signal,
            "finishedAt": t.finished_at,
            "containerID": t.container_id,
            "terminationMessage": t.message,
        },
        changed={},
    )


def container_change(pod: PodCompact, c: Container | None, facts: list[Fact], ctx: DetectContext) -> Change:
    facts = sorted(facts, key=lambda f: f.severity)  # stable: the newest termination leads its kind
    lead = facts[0]
    name = c.name if c is not None else facts[0].discriminators[0]
    words: list[str] = []
    for fact in sorted(facts, key=lambda f: f.order):
        if fact.words not in words:
            words.append(fact.words)
    data: dict[str, Any] = {"container": name}
    if c is not None:
        data.update(image=c.image, restartCount=c.restarts, state=c.state)
    for fact in reversed(facts):  # the most severe fact's fields win
        data.update({key: value for key, value in fact.fields.items() if value is not None})
    changed: dict[str, Any] = {}
    for fact in reversed(facts):
        changed.update(fact.changed)
    if len(facts) > 1:
        data["facts"] = [fact.reason for fact in facts]
    return make_change(
        title=lead.title,
        timestamp=lead.stamp,
        external_id=external_id(ctx, KIND, pod.namespace, pod.name, pod.uid, lead.reason, *lead.discriminators),
        namespace=pod.namespace,
        kind=KIND,
        reason=lead.reason,
        summary=f"Container {name} of pod {pod.name} " + and_join(words),
        data=pod_data(pod, **data, changed=changed),
    )


# ---------------------------------------------------------------- data


def _container_data(c: Container) -> dict[str, Any]:
    data = {"name": c.name, "image": c.image, "ready": c.ready, "restartCount": c.restarts, "state": c.state}
    if c.reason:
        data["stateReason"] = c.reason
    if c.init:
        data["init"] = True
    return data


def _container_words(c: dict[str, Any]) -> str:
    state = c["state"] + (f" ({c['stateReason']})" if c.get("stateReason") else "")
    return f"{c['name']}: {state or 'no status'}, {c['restartCount']} restarts, {'ready' if c['ready'] else 'not ready'}"


_LISTINGS: dict = {}


def _listings(containers: tuple, conditions: tuple) -> dict[str, Any]:
    """The containers and conditions lists of the data, with their one-line summaries.

    Built once per distinct (containers, conditions): both are shared canonical tuples, so
    the replicas of a workload in the same state share one listing. Never mutated after
    (the data is read-only once made: pruned and bounded copy, serialisers read)."""
    key = (containers, conditions)
    found = _LISTINGS.get(key)
    if found is None:
        found = {}
        listed((_container_data(c) for c in containers), found, "containers", _container_words)
        listed(
            ({"type": t, "status": s, "reason": r} if r else {"type": t, "status": s} for t, s, r in conditions),
            found,
            "conditions",
            lambda c: f"{c['type']}={c['status']}" + (f" ({c['reason']})" if "reason" in c else ""),
        )
        if len(_LISTINGS) >= 4096:
            _LISTINGS.clear()
        _LISTINGS[key] = found
    return found


def where(pod: PodCompact) -> str:
    return pod.phase + (f" on {pod.node}" if pod.node else "")


def pod_data(pod: PodCompact, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"pod": pod.name, "namespace": pod.namespace, "phase": pod.phase, "node": pod.node}
    if "image" not in extra and pod.containers:
        app = [c for c in pod.containers if not c.init] or pod.containers
        data["image"] = app[0].image
    data.update(extra)
    changed = data.pop("changed", None)
    data.update(_listings(pod.containers, pod.conditions))
    data["labels"] = labels_dict(pod.labels)
    if changed:
        data["changed"] = changed
    return data
