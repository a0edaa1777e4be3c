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
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..egress import url_problem
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from ..resources import RESOURCE_NAMES

_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A namespace name with shell-style wildcards (fnmatch: *, ?, [...]), as excludeNamespaces takes.
_NAMESPACE_PATTERN_RE = re.compile(r"^[a-z0-9*?\[\]!-]+$")
_LIST_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Limits:
    """What one integration may ask of the shared process (STYLE: bound what input can grow).

    Defaults are generous for a real cluster and small next to what would hurt the others:
    200 clusters x 5,000 namespaces x 6 resources is 6 million watches; 20 x 100 x 6 is
    12,000 at worst, and the per-tenant watch budget (applied by `sources.select`) caps a
    tenant's total across its integrations."""

    clusters: int = 20
    namespaces: int = 100
    tags: int = 20
    tag_length: int = 100
    name_length: int = 200
    watches_per_tenant: int = 2000


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
    # A tenant wrote it (backend mode, tenantId set): the egress policy applies to `server`.
    restricted: bool = False

    @property
    def mode(self) -> str:
        if self.in_cluster:
            return "in-cluster"
        return "kubeconfig" if self.context else "token"

    @property
    def credential_fingerprint(self) -> str:
        """A digest of everything that selects the credentials (safe to log or compare)."""
        parts = (self.server, self.token, self.certificate, self.skip_tls_verify, self.context, self.in_cluster,
                 self.restricted)
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
    exclude_namespaces: tuple[str, ...] = ()  # names or shell-style patterns (issue 19)
    label_selector: str = ""  # a Kubernetes label selector, sent with every list and watch; "" = none

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


def _valid_server(value: str) -> None:
    problem = url_problem(value, restricted=False)
    if problem:
        raise ValidationError(problem)


def _valid_namespace(value: str) -> None:
    if len(value) > 63 or not _NAMESPACE_RE.match(value):
        raise ValidationError("not a valid namespace name (lowercase RFC 1123 label, at most 63 characters).")


def _valid_namespace_pattern(value: str) -> None:
    if len(value) > 63 or not _NAMESPACE_PATTERN_RE.match(value):
        raise ValidationError("not a namespace name or shell-style pattern (lowercase letters, digits, '-', "
                              "and the wildcards * ? [...]; at most 63 characters).")


def _valid_label_selector(value: str) -> None:
    from ..selectors import selector_problem

    problem = selector_problem(value)
    if problem:
        raise ValidationError(problem)


class _SelectorText(fields.String):
    """A `text` field: surrounding whitespace dropped; blank or null means no selector."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        return text.strip()


class ClusterSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1, max=253))
    server = fields.Url(require_tld=False, schemes={"http", "https"}, load_default=None, allow_none=True,
                        validate=_valid_server)
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


class _NamespaceList(fields.List):
    """What the PainChain UI sends for its `text` field: a list, or the typed string
    ("shop-a, shop-b", "shop-a shop-b"), or "" / null / absent for all namespaces."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = [part for part in _LIST_SEPARATORS.split(value) if part]
        return super()._deserialize(value, attr, data, **kwargs)


class _JsonText(fields.Field):
    """A `textarea` field: the UI stores the parsed JSON, or the raw text when the user typed
    something that is not JSON. The error names the position only: never the text (it may
    hold a token)."""

    def __init__(self, inner: fields.Field, *, blank: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inner = inner
        self.blank = blank  # what an empty text area means

    def _bind_to_schema(self, field_name, schema):
        super()._bind_to_schema(field_name, schema)
        self.inner._bind_to_schema(field_name, schema)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if not value.strip():
                value = self.blank
            else:
                try:
                    value = json.loads(value)
                except ValueError as exc:
                    where = f"line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else "?"
                    raise ValidationError(f"not valid JSON (at {where}).") from None
                except RecursionError:  # "[[[[...]]]]": a tenant must not crash the re-sync
                    raise ValidationError("not valid JSON (nested too deeply).") from None
        return None if value is None else self.inner.deserialize(value, attr, data, **kwargs)


class ConfigSchema(Schema):
    """`config` of an integration. Clusters are checked one by one by `parse_integration`."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1))
    tags = fields.List(fields.String(), required=True)
    clusters = _JsonText(fields.List(fields.Dict(), validate=validate.Length(min=1)), blank=[], required=True)
    namespaces = _NamespaceList(fields.String(validate=_valid_namespace), load_default=list, allow_none=True)
    resources = _JsonText(fields.Nested(ResourcesSchema), load_default=Resources, allow_none=True)
    exclude_namespaces = _NamespaceList(fields.String(validate=_valid_namespace_pattern), data_key="excludeNamespaces",
                                        load_default=list, allow_none=True)
    label_selector = _SelectorText(data_key="labelSelector", load_default="", allow_none=True,
                                   validate=_valid_label_selector)


class IntegrationSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    # "" is not "no tenant": events without the header would land in the self-hosted space.
    tenant_id = fields.String(data_key="tenantId", load_default=None, allow_none=True,
                              validate=validate.Length(min=1, max=200, error="must be null or a non-empty string."))
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


def _over_limits(config: dict, limits: Limits) -> list[str]:
    """Per-field errors for a config that asks more of the shared process than it may."""
    problems = []
    if len(config["name"]) > limits.name_length:
        problems.append(f"config.name: longer than {limits.name_length} characters.")
    tags = config["tags"]
    if len(tags) > limits.tags:
        problems.append(f"config.tags: more than {limits.tags} tags.")
    elif any(len(t) > limits.tag_length for t in tags):
        problems.append(f"config.tags: a tag is longer than {limits.tag_length} characters.")
    if len(config["clusters"]) > limits.clusters:
        problems.append(f"config.clusters: more than {limits.clusters} clusters (the limit per integration).")
    if len(set(config["namespaces"] or ())) > limits.namespaces:
        problems.append(f"config.namespaces: more than {limits.namespaces} namespaces (the limit per integration).")
    if len(set(config["exclude_namespaces"] or ())) > limits.namespaces:
        problems.append(f"config.excludeNamespaces: more than {limits.namespaces} entries (the limit per integration).")
    return problems


def parse_integration(raw: Any, *, limits: Limits = Limits()) -> ParseResult:
    """Validate one integration document; never raises for bad input."""
    try:
        return _parse_integration(raw, limits=limits)
    except RecursionError:  # a document nested deeper than any real one: refuse it, not the re-sync
        return ParseResult(None, _safe_id(raw), ("integration: nested too deeply to read.",))


def _parse_integration(raw: Any, *, limits: Limits) -> ParseResult:
    integration_id = _safe_id(raw)
    if not isinstance(raw, Mapping):
        return ParseResult(None, integration_id, ("integration: must be a JSON object.",))
    try:
        doc = IntegrationSchema().load(raw)
    except ValidationError as exc:
        return ParseResult(None, integration_id, tuple(_flatten(exc.messages)))
    config = doc["config"]
    over = _over_limits(config, limits)
    if over:
        return ParseResult(None, integration_id, tuple(over))
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
        tenant_id=doc["tenant_id"],
        name=config["name"],
        tags=tuple(config["tags"]),
        clusters=tuple(clusters),
        namespaces=tuple(dict.fromkeys(config["namespaces"] or ())),
        resources=config["resources"] or Resources(),
        status=doc["status"] or "active",
        exclude_namespaces=tuple(dict.fromkeys(config["exclude_namespaces"] or ())),
        label_selector=config["label_selector"] or "",
    )
    return ParseResult(integration, integration_id, tuple(errors))
