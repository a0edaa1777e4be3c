"""The integration boundary: backend (or local file) documents in, typed objects out.

`parse_integration` validates one document with marshmallow and returns a typed,
frozen `Integration` plus the reasons any part was rejected. One invalid cluster
never invalidates its valid siblings; one invalid integration never affects others
(the caller parses each document on its own). Error messages are keyed by field and
never contain a token, a certificate or the config itself: every message is one of
marshmallow's fixed texts or ours, none interpolates the input.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from ..resources import RESOURCE_NAMES

_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Cluster:
    """One cluster's credentials. Secrets are excluded from repr and never logged."""

    name: str
    server: str | None = None
    token: str | None = field(default=None, repr=False)
    certificate: str | None = field(default=None, repr=False)  # base64 of a PEM bundle
    skip_tls_verify: bool = False
    context: str | None = None
    in_cluster: bool = False

    @property
    def mode(self) -> str:
        if self.in_cluster:
            return "in-cluster"
        return "kubeconfig" if self.context else "token"

    @property
    def credential_fingerprint(self) -> str:
        """A digest of everything that selects the credentials (safe to log or compare)."""
        parts = (self.server, self.token, self.certificate, self.skip_tls_verify, self.context, self.in_cluster)
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    @property
    def ca_pem(self) -> bytes | None:
        return base64.b64decode(self.certificate) if self.certificate else None


@dataclass(frozen=True)
class Resources:
    """Which of RESOURCE_NAMES to watch: all but the switched-off ones."""

    disabled: frozenset[str] = frozenset()

    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in RESOURCE_NAMES if name not in self.disabled)


@dataclass(frozen=True)
class Integration:
    id: str
    tenant_id: str | None
    name: str
    tags: tuple[str, ...]
    clusters: tuple[Cluster, ...]
    namespaces: tuple[str, ...] = ()  # () = all namespaces
    resources: Resources = Resources()
    status: str = "active"

    @property
    def active(self) -> bool:
        return self.status != "inactive"


@dataclass(frozen=True)
class ParseResult:
    """An integration (None when it is unusable as a whole) and why parts were rejected."""

    integration: Integration | None
    integration_id: str
    errors: tuple[str, ...] = ()


def _valid_certificate(value: str) -> None:
    try:
        pem = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("must be base64 of a PEM CA bundle (not valid base64).") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValidationError("must be base64 of a PEM CA bundle (no BEGIN CERTIFICATE block).")


def _valid_namespace(value: str) -> None:
    if len(value) > 63 or not _NAMESPACE_RE.match(value):
        raise ValidationError("not a valid namespace name (lowercase RFC 1123 label, at most 63 characters).")


class ClusterSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1, max=253))
    server = fields.Url(require_tld=False, schemes={"http", "https"}, load_default=None, allow_none=True)
    token = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1))
    certificate = fields.String(load_default=None, allow_none=True, validate=_valid_certificate)
    skip_tls_verify = fields.Boolean(data_key="skipTLSVerify", load_default=False, allow_none=False)
    context = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1))
    in_cluster = fields.Boolean(data_key="inCluster", load_default=False)

    @validates_schema
    def _one_mode(self, data: dict, **_kwargs) -> None:
        token_mode = data.get("server") is not None or data.get("token") is not None
        modes = [token_mode, data.get("context") is not None, bool(data.get("in_cluster"))]
        if sum(modes) > 1:
            raise ValidationError(
                "a cluster is either server+token, context, or inCluster; not several.", "_schema"
            )
        if sum(modes) == 0:
            raise ValidationError("a cluster needs server+token, or context (kubeconfig), or inCluster.", "_schema")
        if token_mode and (data.get("server") is None or data.get("token") is None):
            missing = "server" if data.get("server") is None else "token"
            raise ValidationError("required in token mode (server+token).", missing)

    @post_load
    def _make(self, data: dict, **_kwargs) -> Cluster:
        return Cluster(**data)


class _ResourcesBase(Schema):
    class Meta:
        unknown = EXCLUDE

    @post_load
    def _make(self, data: dict, **_kwargs) -> Resources:
        return Resources(frozenset(name for name, on in data.items() if not on))


# One boolean per watched resource, absent = true.
ResourcesSchema = _ResourcesBase.from_dict(
    {name: fields.Boolean(load_default=True) for name in RESOURCE_NAMES}, name="ResourcesSchema")


class ConfigSchema(Schema):
    """`config` of an integration. Clusters are checked one by one by `parse_integration`."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1))
    tags = fields.List(fields.String(), required=True)
    clusters = fields.List(fields.Dict(), required=True, validate=validate.Length(min=1))
    namespaces = fields.List(fields.String(validate=_valid_namespace), load_default=list, allow_none=True)
    resources = fields.Nested(ResourcesSchema, load_default=Resources, allow_none=True)


class IntegrationSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1))
    tenant_id = fields.String(data_key="tenantId", load_default=None, allow_none=True)
    type = fields.String(load_default="kubernetes")
    name = fields.String(load_default=None, allow_none=True)
    status = fields.String(load_default="active", allow_none=True)
    config = fields.Nested(ConfigSchema, required=True)


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    """{'config': {'tags': ['Missing data']}} -> ['config.tags: Missing data']."""
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, value in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            out.extend(_flatten(value, name))
        return out
    if isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            return [f"{prefix}: {' '.join(messages)}" if prefix else " ".join(messages)]
        return [line for m in messages for line in _flatten(m, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]


def _safe_id(raw: Any) -> str:
    value = raw.get("id") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) and value else "<no id>"


def _cluster_label(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return f"{name!r}" if isinstance(name, str) and name else f"#{index}"


def parse_integration(raw: Any) -> ParseResult:
    """Validate one integration document; never raises for bad input."""
    integration_id = _safe_id(raw)
    if not isinstance(raw, Mapping):
        return ParseResult(None, integration_id, ("integration: must be a JSON object.",))
    try:
        doc = IntegrationSchema().load(raw)
    except ValidationError as exc:
        return ParseResult(None, integration_id, tuple(_flatten(exc.messages)))
    config = doc["config"]
    errors: list[str] = []
    clusters: list[Cluster] = []
    seen: set[str] = set()
    for index, raw_cluster in enumerate(config["clusters"]):
        label = _cluster_label(raw_cluster, index)
        try:
            cluster = ClusterSchema().load(raw_cluster)
        except ValidationError as exc:
            errors.extend(f"cluster {label}: {line}" for line in _flatten(exc.messages))
            continue
        if cluster.name in seen:
            errors.append(f"cluster {label}: name: duplicate cluster name in this integration.")
            continue
        seen.add(cluster.name)
        clusters.append(cluster)
    if not clusters:
        errors.append("config.clusters: no valid cluster.")
        return ParseResult(None, integration_id, tuple(errors))
    integration = Integration(
        id=doc["id"],
        tenant_id=doc["tenant_id"] or None,
        name=config["name"],
        tags=tuple(config["tags"]),
        clusters=tuple(clusters),
        namespaces=tuple(dict.fromkeys(config["namespaces"] or ())),
        resources=config["resources"] or Resources(),
        status=doc["status"] or "active",
    )
    return ParseResult(integration, integration_id, tuple(errors))
