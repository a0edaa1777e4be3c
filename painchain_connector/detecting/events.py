"""core/v1 Events: every Warning, and Normal ones with a reason in NORMAL_REASONS.

A repeated Event (one Event object, its count bumped) is reported on its first occurrence,
then at most once per `ctx.event_repeat_window` seconds, measured on the Event's own
timestamps; the state returned by `detect` carries what was last reported. Deleting an
Event object (the apiserver expires them after an hour) reports nothing.
"""
from __future__ import annotations



from ..model import Change, DetectContext
from ..objects import Event, EventSeries, ObjectReference
from .common import Compact, clip, external_id, istr, make_change, parse_time, when

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


_NO_SERIES, _NO_OBJECT = EventSeries(), ObjectReference()


class EventCompact(Compact):
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


def project(obj: Event, seen_at: float | None = None) -> EventCompact:
    meta = obj.metadata
    series = obj.series or _NO_SERIES  # absent (or null) on Events created through core/v1
    event_type = istr(obj.type or "Normal")
    reason = istr(obj.reason)
    count = max(obj.count or 0, series.count or 0, 1)
    last = obj.last_timestamp or series.last_observed_time or obj.event_time
    involved = obj.involved_object
    if involved is None or not (involved.kind or involved.name):  # events.k8s.io's spelling
        involved = obj.regarding or _NO_OBJECT
    source = obj.source
    return EventCompact(
        uid=meta.uid or "",
        name=meta.name or "",
        namespace=istr(meta.namespace),
        resource_version=meta.resource_version or "",
        type=event_type,
        reason=reason,
        message=clip(obj.message or obj.note) if _reported(event_type, reason) else None,
        count=count,
        first=obj.first_timestamp or obj.event_time,
        last=last,
        involved=(istr(involved.kind), involved.name or "", istr(involved.namespace)),
        source=istr((source.component if source is not None else None) or obj.reporting_component),
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
