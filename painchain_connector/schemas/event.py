"""The outgoing PainChain event: `Change` + `Route` -> the document the backend accepts.

`PainChainEventSchema` (marshmallow) defines the document: it is the validation and the
source of the published `schemas/event.schema.json`. Posting does not go through it:
`to_outgoing` fills an `OutgoingEvent` (a msgspec Struct with the same fields, names and
order) and encodes it once to the UTF-8 JSON bytes that are posted, spooled and written by
the local sink, ~4x cheaper per event than marshmallow's `dump` plus `json.dumps`
(bench #1c, bench/outgoing.py). `schema_document` is the same event through the schema;
tests/unit/test_outgoing_encoding.py holds the two equal on every kind of event.

Pure: no I/O; the encoder is created on first use, not on import.
"""
from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Any

import msgspec
from marshmallow import Schema, fields, validate

from ..model import CLUSTER_SCOPE, Change, Outgoing, Route

CONNECTOR = "kubernetes"


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with a `Z` suffix and millisecond precision: 2026-11-25T23:24:41.123Z
    (the backend's format, for event timestamps and lastSync alike); naive means UTC.

    Formatted with `%` rather than strftime: it runs once per outgoing event, and strftime
    alone cost a third to a half of encoding one (bench/outgoing.py). The year is always 4
    digits."""
    if value.tzinfo is not None and value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond // 1000)


class UtcTimestamp(fields.Field):
    """A datetime serialised by `iso_utc`."""

    def _serialize(self, value: datetime | None, attr, obj, **kwargs):
        return None if value is None else iso_utc(value)


def _fields(kind: str, names: str, description: str) -> dict:
    return {name: {"type": kind, "description": description} for name in names.split()}


# What `data` carries (README, "Event reference"). Shaped for PainChain's generic detail
# view: the facts read first are top-level scalars, every list has a one-line `...Summary`
# string beside it, and no field is ever null or empty (absent instead).
DATA_PROPERTIES: dict = {
    "summary": {"type": "string", "description": "one human line saying what happened; always present"},
    "reason": {"type": "string", "description": "the most specific Kubernetes reason: CrashLoopBackOff, OOMKilled, "
               "Evicted, ProgressDeadlineExceeded, an Event's reason; else the change (Created, Scaled, ...)"},
    **_fields("string", "pod name namespace node phase previousPhase container image previousImage state strategy "
              "type clusterIP source message terminationReason terminationMessage finishedAt containerID progressing "
              "firstTimestamp lastTimestamp", "see the README's event reference"),
    **_fields("integer", "exitCode signal restartCount previousRestartCount replicas previousReplicas readyReplicas "
              "availableReplicas updatedReplicas currentReplicas desiredNumberScheduled currentNumberScheduled "
              "numberReady numberUnavailable generation previousGeneration count", "see the README's event reference"),
    **_fields("string", "containersSummary conditionsSummary imagesSummary portsSummary changesSummary",
              "the list beside it in one line (a generic renderer shows a list as 'N items')"),
    **_fields("array", "containers conditions images ports", "at most 20 entries; ...Truncated/...Total when cut"),
    "facts": {"type": "array", "items": {"type": "string"},
              "description": "when one update of one container carried several facts, all of them, most severe first"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "changed": {"type": "object", "description": "what changed, as {field: {old, new}}; an absent old was unset"},
    "changes": {"type": "array", "description": "Updated workloads: every spec change, at most 20 (changesTruncated, "
                "changesTotal when cut); a value that may hold a secret (a literal env value, command, args) shows "
                "no old or new, only the change",
                "items": {"type": "object", "required": ["path", "change"], "properties": {
                    "path": {"type": "string", "description": "e.g. containers[main].image, "
                             "containers[main].env.LOG_LEVEL, nodeSelector.disk, template.labels.app"},
                    "change": {"enum": ["changed", "added", "removed"]},
                    "old": {"description": "the value before (absent when added or hidden)"},
                    "new": {"description": "the value after (absent when removed or hidden)"}}}},
    "involvedObject": {"type": "object", "description": "the object a Kubernetes Event is about: kind, name, namespace"},
    # correlation (detecting/correlation.py)
    "owner": {"type": "object", "description": "Pod events: the top-level workload through ownerReferences "
              "(Deployment via its ReplicaSet, StatefulSet, DaemonSet, CronJob via its Job, a bare ReplicaSet or "
              "Job); absent for a bare pod",
              "properties": {"kind": {"type": "string"}, "name": {"type": "string"}}, "required": ["kind", "name"]},
    "ownerSummary": {"type": "string", "description": "owner in one line: 'Deployment api'"},
    "revision": {"type": "string", "description": "Deployment events: deployment.kubernetes.io/revision (an Updated "
                 "event of a pod-template change: the revision it starts); Pod events of a Deployment: its "
                 "ReplicaSet's revision (absent without permission to list ReplicaSets)"},
    **_fields("string", "changeCause", "Deployment events: the kubernetes.io/change-cause annotation"),
    **_fields("string", "updateRevision currentRevision", "StatefulSet/DaemonSet events: the status' revisions"),
    **_fields("string", "podTemplateHash controllerRevisionHash", "Pod events: the pod's pod-template-hash / "
              "controller-revision-hash label"),
    "changedBy": {"type": "string", "description": "Created/Scaled/Updated of workloads, Created of Services: the "
                  "tool (managedFields manager) owning the changed fields: kubectl, helm, argocd, "
                  "kustomize-controller, ...; absent when no managedFields entry recorded the change"},
    "fieldManager": {"type": "string", "description": "the raw manager name when changedBy shortens it "
                     "(kubectl-edit, kubectl-client-side-apply, ...)"},
    "rollout": {"type": "object", "description": "Pod failures (CrashLoopBackOff, image pull, non-zero exit, "
                "Evicted, Failed) within ROLLOUT_WINDOW after their workload's Updated event: that rollout",
                "properties": {"kind": {"type": "string"}, "name": {"type": "string"}, "revision": {"type": "string"},
                               "startedAt": {"type": "string", "format": "date-time"},
                               "externalId": {"type": "string", "description": "the workload's Updated event"},
                               "images": {"type": "array"}},
                "required": ["kind", "name", "startedAt", "externalId"]},
    "rolloutSummary": {"type": "string", "description": "rollout in one line: 'Deployment api to revision 7, "
                       "started <time>'"},
}


class PainChainEventSchema(Schema):
    """POST /events body (see the backend contract, section 3)."""

    title = fields.String(required=True, validate=validate.Length(min=1, max=500))
    connector = fields.String(required=True, validate=validate.Equal(CONNECTOR))
    project = fields.String(required=True, metadata={"description": "<cluster name>:<namespace>, or <cluster>:_cluster"})
    timestamp = UtcTimestamp(required=True, metadata={"type": "string", "format": "date-time"})
    integration_id = fields.String(required=True, data_key="integrationId")
    external_id = fields.String(required=True, data_key="externalId", metadata={"description": "dedupe key"})
    data = fields.Dict(required=True, metadata={"properties": DATA_PROPERTIES, "additionalProperties": True})
    tags = fields.List(fields.String(), required=True)


class OutgoingEvent(msgspec.Struct, frozen=True,
                    rename={"integration_id": "integrationId", "external_id": "externalId"}):
    """The POST /events body as msgspec encodes it: `PainChainEventSchema`'s fields, in its
    order, under its data keys. Nothing is optional: every field is always sent."""

    title: str
    connector: str
    project: str
    timestamp: str  # iso_utc
    integration_id: str
    external_id: str
    data: dict[str, Any]
    tags: list[str]


@functools.cache
def _encoder() -> msgspec.json.Encoder:
    return msgspec.json.Encoder()


@functools.cache
def _schema() -> PainChainEventSchema:
    return PainChainEventSchema()


def to_outgoing(change: Change, route: Route, *, project: str | None = None) -> Outgoing:
    """Attach routing to a detected change and encode it, once, to the bytes that are posted.
    `project` replaces "<cluster>:<namespace>" (integration problems use "_integration")."""
    event = OutgoingEvent(
        title=change.title,
        connector=CONNECTOR,
        project=project or f"{route.cluster}:{change.namespace or CLUSTER_SCOPE}",
        timestamp=iso_utc(change.timestamp),
        integration_id=route.integration_id,
        external_id=change.external_id,
        data=dict(change.data),
        tags=list(route.tags),
    )
    return Outgoing(
        tenant_id=route.tenant_id,
        integration_id=route.integration_id,
        external_id=change.external_id,
        payload=_encoder().encode(event),
        kind=change.kind,
        cluster=route.cluster,
    )


def schema_document(change: Change, route: Route, *, project: str | None = None) -> dict[str, Any]:
    """The same event through `PainChainEventSchema.dump`: the reference `to_outgoing` is held
    to (tests, bench/outgoing.py). Not on the delivery path."""
    return _schema().dump(
        {
            "title": change.title,
            "connector": CONNECTOR,
            "project": project or f"{route.cluster}:{change.namespace or CLUSTER_SCOPE}",
            "timestamp": change.timestamp,
            "integration_id": route.integration_id,
            "external_id": change.external_id,
            "data": dict(change.data),
            "tags": list(route.tags),
        }
    )
