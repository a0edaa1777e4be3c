"""The outgoing PainChain event: `Change` + `Route` -> the document the backend accepts.

Serialisation goes through `PainChainEventSchema` (marshmallow `dump`), so the shape that
is posted and the published `schemas/event.schema.json` come from one definition.
"""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import Schema, fields, validate

from ..model import CLUSTER_SCOPE, Change, Outgoing, Route

CONNECTOR = "kubernetes"


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with a `Z` suffix and millisecond precision: 2026-11-25T23:24:41.123Z
    (the backend's format, for event timestamps and lastSync alike); naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class UtcTimestamp(fields.Field):
    """A datetime serialised by `iso_utc`."""

    def _serialize(self, value: datetime | None, attr, obj, **kwargs):
        return None if value is None else iso_utc(value)


class PainChainEventSchema(Schema):
    """POST /events body (see the backend contract, section 3)."""

    title = fields.String(required=True, validate=validate.Length(min=1, max=500))
    connector = fields.String(required=True, validate=validate.Equal(CONNECTOR))
    project = fields.String(required=True, metadata={"description": "<cluster name>:<namespace>, or <cluster>:_cluster"})
    timestamp = UtcTimestamp(required=True, metadata={"type": "string", "format": "date-time"})
    integration_id = fields.String(required=True, data_key="integrationId")
    external_id = fields.String(required=True, data_key="externalId", metadata={"description": "dedupe key"})
    data = fields.Dict(required=True)
    tags = fields.List(fields.String(), required=True)


_EVENT_SCHEMA = PainChainEventSchema()


def to_outgoing(change: Change, route: Route) -> Outgoing:
    """Attach routing to a detected change and serialise it through the schema."""
    namespace = change.namespace or CLUSTER_SCOPE
    body = _EVENT_SCHEMA.dump(
        {
            "title": change.title,
            "connector": CONNECTOR,
            "project": f"{route.cluster}:{namespace}",
            "timestamp": change.timestamp,
            "integration_id": route.integration_id,
            "external_id": change.external_id,
            "data": dict(change.data),
            "tags": list(route.tags),
        }
    )
    return Outgoing(
        tenant_id=route.tenant_id,
        integration_id=route.integration_id,
        external_id=change.external_id,
        body=body,
        kind=change.kind,
        cluster=route.cluster,
    )
