"""core/v1 Events: every Warning, and Normal ones with a reason in NORMAL_REASONS.

A repeated Event (one Event object, its count bumped) is reported on its first occurrence,
then at most once per `ctx.event_repeat_window` seconds, measured on the Event's own
timestamps; the state returned by `detect` carries what was last reported. Deleting an
Event object (the apiserver expires them after an hour) reports nothing.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ..model import Change, DetectContext
from .common import clip, external_id, istr, make_change, meta_strings, parse_time, when

KIND = "Event"
NORMAL_REASONS = frozenset(
    {
        "Pulling",
        "Pulled",
        "Created",
        "Started",
        "Killing",
        "Scheduled",
        "FailedScheduling",
        "SuccessfulCreate",
        "SuccessfulDelete",
        "ScalingReplicaSet",
        "Unhealthy",
        "BackOff",
    }
)


class EventCompact(NamedTuple):
    uid: str
    name: str
    namespace: str
    resource_version: str
    type: str
    reason: str
    message: str | None  # kept (clipped) only for reported Events
    count: int
    first: str | None  # firstTimestamp, else eventTime
    last: str | None  # lastTimestamp, else series.lastObservedTime, else eventTime
    involved: tuple  # (kind, name, namespace)
    source: str
    reported_count: int  # bookkeeping: count at the last report (a baseline counts as reported)
    reported_last: str | None  # bookkeeping: `last` at the last report
    seen_at: float | None = None  # epoch seconds when the connector first saw this version


def _reported(event_type: str, reason: str) -> bool:
    return event_type == "Warning" or (event_type == "Normal" and reason in NORMAL_REASONS)


def project(obj: Mapping[str, Any], seen_at: float | None = None) -> EventCompact:
    _, uid, name, namespace, resource_version = meta_strings(obj)
    series = obj.get("series") or {}  # absent (or null) on Events created through core/v1
    event_type = istr(obj.get("type") or "Normal")
    reason = istr(obj.get("reason"))
    count = max(obj.get("count") or 0, series.get("count") or 0, 1)
    last = obj.get("lastTimestamp") or series.get("lastObservedTime") or obj.get("eventTime")
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    source = obj.get("source") or {}
    return EventCompact(
        uid=uid,
        name=name,
        namespace=namespace,
        resource_version=resource_version,
        type=event_type,
        reason=reason,
        message=clip(obj.get("message") or obj.get("note")) if _reported(event_type, reason) else None,
        count=count,
        first=obj.get("firstTimestamp") or obj.get("eventTime"),
        last=last,
        involved=(istr(involved.get("kind")), involved.get("name") or "", istr(involved.get("namespace"))),
        source=istr(source.get("component") or obj.get("reportingComponent")),
        reported_count=count,
        reported_last=last,
        seen_at=seen_at,
    )


def detect(
    old: EventCompact | None, new: EventCompact | None, *, deleted: bool, ctx: DetectContext
) -> tuple[list[Change], EventCompact | None]:
    if deleted:
        return [], None
    if new is None:
        return [], old
    if not _reported(new.type, new.reason):
        return [], new
    if old is not None and not _repeat_due(old, new, ctx.event_repeat_window):
        return [], new._replace(reported_count=old.reported_count, reported_last=old.reported_last)
    return [_change(new, ctx)], new  # a projection counts itself as reported


def _repeat_due(old: EventCompact, new: EventCompact, window: float) -> bool:
    if new.count <= old.reported_count:
        return False
    before, now = parse_time(old.reported_last), parse_time(new.last)
    if before is None or now is None:
        return False  # cannot measure the window: never risk a flood
    return (now - before).total_seconds() >= window


def _change(e: EventCompact, ctx: DetectContext) -> Change:
    kind, name, namespace = e.involved
    return make_change(
        title=f"K8s Event [{e.type}]: {e.reason} - {kind}/{name}",
        timestamp=when(e.last, ctx, e),
        external_id=external_id(ctx, KIND, e.namespace, e.name, e.uid, e.reason or "-", e.count),
        namespace=e.namespace,
        kind=KIND,
        reason=e.reason,
        summary=f"{e.type} {e.reason} on {kind}/{name}" + (f" from {e.source}" if e.source else "")
        + (f": {e.message}" if e.message else "") + (f" ({e.count} times)" if e.count > 1 else ""),
        data={
            "reason": e.reason,
            "message": e.message,
            "type": e.type,
            "count": e.count,
            "firstTimestamp": e.first,
            "lastTimestamp": e.last,
            "involvedObject": {key: value for key, value in (("kind", kind), ("name", name), ("namespace", namespace)) if value},
            "source": e.source,
        },
    )
