"""Typed, frozen settings: what every other module receives instead of os.environ.

Settings are read once, at the boundary (CLI flags, environment, or an embedding
application's keyword arguments), validated by a marshmallow schema and turned into
a frozen `Settings`. A bad value fails here with a message naming the variable; no
other module reads the environment.
"""
from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate

DEFAULT_BACKEND_URL = "http://painchain-app:8000/api"


@dataclass(frozen=True)
class Settings:
    """Everything the connector can be told. Field docs double as `--help` text."""

    # None = local mode (integrations from a file or kubeconfig, events to a sink).
    backend_url: str | None = None
    resync_interval: float = 60.0
    log_level: str = "INFO"
    log_format: str = "text"
    health_port: int = 8080
    health_host: str = "0.0.0.0"
    config_file: Path | None = None
    sink: Path | None = None  # local mode: None = stdout
    state_dir: Path | None = None
    state_flush_interval: float = 30.0  # seconds between saves of the watch state (STATE_DIR)
    # Backend documents are tenant-written: may they use the connector's own credentials?
    allow_in_cluster: bool = False  # inCluster: the pod's service account (single-tenant only)
    # context clusters of tenant integrations (tenant-less ones may always use a context)
    allow_kubeconfig_contexts: bool = False
    # egress policy for tenants' cluster servers (CIDRs): re-allow built-in refused ranges / add ranges
    allowed_server_networks: tuple[str, ...] = ()
    denied_server_networks: tuple[str, ...] = ()
    # what one tenant may ask of the shared process
    max_clusters_per_integration: int = 20
    max_namespaces_per_integration: int = 100
    max_watches_per_tenant: int = 2000
    max_tags: int = 20
    max_tag_length: int = 100
    # reconcile without loss
    shrink_confirmations: int = 3  # fetches that must agree before a suspicious shrink applies
    state_retention: float = 3600.0  # seconds a stopped integration's watch state is kept
    # reporting to tenants (backend mode)
    last_sync_interval: float = 600.0  # at most one lastSync PUT per integration per this
    status_public: bool = False  # /status (per-integration detail) answers non-loopback clients
    # watching
    watch_timeout: float = 300.0  # server-side timeoutSeconds upper bound (randomised down to half)
    stall_margin: float = 30.0  # client read timeout = watch timeout + this
    stall_probe_interval: float = 30.0  # silence that makes a watch quiet (probed); 0 = no probe
    stall_probe_rate: float = 10.0  # stall probes per second at most, all clusters together
    list_page_size: int = 500
    connect_timeout: float = 10.0
    # bounded reads: what one cluster's answer may cost (a tenant's "apiserver" is a stranger)
    max_list_page_bytes: int = 32 * 2**20
    max_watch_line_bytes: int = 4 * 2**20
    max_list_objects: int = 150_000
    max_list_pages: int = 2_000
    # delivery
    senders: int = 8
    max_attempts: int = 8
    retry_initial: float = 5.0  # first pause after a charged failure (500); doubles up to retry_max
    retry_max: float = 300.0
    max_event_age: float = 3600.0
    drain_timeout: float = 10.0
    outbox_max: int = 50_000
    post_timeout: float = 10.0
    # detection
    event_repeat_window: float = 300.0  # k8s Event repeats coalesced within this window
    rollout_window: float = 900.0  # a pod failure this soon after its workload's rollout names it
    # sharding: off unless shard_lease_namespace is set (README "Scaling out")
    shard_lease_namespace: str | None = None  # host-cluster namespace of the group's Leases
    shard_group: str = "painchain-kubernetes"  # replicas of one group share the integrations
    shard_identity: str = ""  # this replica's Lease name (load_settings: POD_NAME, else the hostname)
    shard_kubeconfig: Path | None = None  # host cluster credentials (else the pod's service account)
    shard_context: str | None = None
    shard_lease_seconds: int = 15  # renewed every lease/7.5 s; dead after this long unrenewed
    shard_handover_seconds: float = 30.0  # an old owner keeps watching a moved integration this long
    # metrics
    metrics_per_integration: bool = False

    @property
    def local_mode(self) -> bool:
        return self.backend_url is None

    @property
    def limits(self):
        from .schemas.integration import Limits

        return Limits(clusters=self.max_clusters_per_integration, namespaces=self.max_namespaces_per_integration,
                      tags=self.max_tags, tag_length=self.max_tag_length,
                      watches_per_tenant=self.max_watches_per_tenant)

    @property
    def egress(self):
        from .egress import EgressPolicy, parse_networks

        return EgressPolicy(allowed=parse_networks(self.allowed_server_networks),
                            denied=parse_networks(self.denied_server_networks))

    @property
    def sharded(self) -> bool:
        return self.shard_lease_namespace is not None

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


class _Networks(fields.Field):
    """Comma-separated CIDRs (env) or a list (keyword arguments) -> a tuple of normalized CIDRs."""

    def _deserialize(self, value, attr, data, **kwargs):
        from .egress import parse_networks

        try:
            return tuple(str(n) for n in parse_networks(value))
        except (ValueError, TypeError) as exc:
            raise ValidationError(str(exc)) from None


_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class _SettingsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    backend_url = fields.Url(require_tld=False, schemes={"http", "https"}, allow_none=True)
    resync_interval = fields.Float(validate=validate.Range(min=1, max=86400))
    log_level = fields.String(
        validate=validate.OneOf(["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"])
    )
    log_format = fields.String(validate=validate.OneOf(["text", "json"]))
    health_port = fields.Integer(validate=validate.Range(min=0, max=65535))
    health_host = fields.String()
    config_file = fields.String(allow_none=True)
    sink = fields.String(allow_none=True)
    state_dir = fields.String(allow_none=True)
    state_flush_interval = fields.Float(validate=validate.Range(min=0.5, max=3600))
    allow_in_cluster = fields.Boolean()
    allow_kubeconfig_contexts = fields.Boolean()
    allowed_server_networks = _Networks()
    denied_server_networks = _Networks()
    max_clusters_per_integration = fields.Integer(validate=validate.Range(min=1, max=10_000))
    max_namespaces_per_integration = fields.Integer(validate=validate.Range(min=1, max=100_000))
    max_watches_per_tenant = fields.Integer(validate=validate.Range(min=1))
    max_tags = fields.Integer(validate=validate.Range(min=0, max=10_000))
    max_tag_length = fields.Integer(validate=validate.Range(min=1, max=10_000))
    shrink_confirmations = fields.Integer(validate=validate.Range(min=1, max=100))
    state_retention = fields.Float(validate=validate.Range(min=0))
    last_sync_interval = fields.Float(validate=validate.Range(min=1))
    status_public = fields.Boolean()
    watch_timeout = fields.Float(validate=validate.Range(min=2, max=3600))
    stall_margin = fields.Float(validate=validate.Range(min=1, max=600))
    stall_probe_interval = fields.Float(validate=validate.Range(min=0, max=3600))
    stall_probe_rate = fields.Float(validate=validate.Range(min=0.1, max=1000))
    list_page_size = fields.Integer(validate=validate.Range(min=1, max=10_000))
    connect_timeout = fields.Float(validate=validate.Range(min=0.1, max=300))
    max_list_page_bytes = fields.Integer(validate=validate.Range(min=64 * 1024))
    max_watch_line_bytes = fields.Integer(validate=validate.Range(min=64 * 1024))
    max_list_objects = fields.Integer(validate=validate.Range(min=1))
    max_list_pages = fields.Integer(validate=validate.Range(min=1))
    senders = fields.Integer(validate=validate.Range(min=1, max=256))
    max_attempts = fields.Integer(validate=validate.Range(min=1, max=1000))
    retry_initial = fields.Float(validate=validate.Range(min=0.001, max=3600))
    retry_max = fields.Float(validate=validate.Range(min=0.001, max=86400))
    max_event_age = fields.Float(validate=validate.Range(min=1))
    drain_timeout = fields.Float(validate=validate.Range(min=0, max=3600))
    outbox_max = fields.Integer(validate=validate.Range(min=10))
    post_timeout = fields.Float(validate=validate.Range(min=0.1, max=600))
    event_repeat_window = fields.Float(validate=validate.Range(min=0))
    rollout_window = fields.Float(validate=validate.Range(min=0))
    metrics_per_integration = fields.Boolean()
    shard_lease_namespace = fields.String(allow_none=True, validate=validate.Regexp(
        _DNS_LABEL, error="must be a namespace name (lower-case letters, digits, '-')"))
    shard_group = fields.String(validate=[validate.Length(max=63), validate.Regexp(
        _DNS_LABEL, error="must be a label value (lower-case letters, digits, '-')")])
    shard_identity = fields.String(validate=[validate.Length(max=253), validate.Regexp(
        r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", error="must be a Lease name (lower-case letters, digits, '-', '.')")])
    shard_kubeconfig = fields.String(allow_none=True)
    shard_context = fields.String(allow_none=True)
    shard_lease_seconds = fields.Integer(validate=validate.Range(min=1, max=3600))
    shard_handover_seconds = fields.Float(validate=validate.Range(min=0, max=3600))

    @pre_load
    def _normalise(self, data, **_kwargs):
        if isinstance(data.get("log_level"), str):
            data = {**data, "log_level": data["log_level"].upper()}
        return data

    @post_load
    def _make(self, data, **_kwargs) -> Settings:
        for key in ("config_file", "sink", "state_dir", "shard_kubeconfig"):
            if data.get(key):
                data[key] = Path(data[key])
            elif key in data:
                data[key] = None
        if data.get("backend_url"):
            data["backend_url"] = data["backend_url"].rstrip("/")
        return Settings(**data)


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable."""


# Environment variable -> settings field. The documented names of the contract first.
ENV_VARS: dict[str, str] = {
    "BACKEND_API_URL": "backend_url",
    "RESYNC_INTERVAL": "resync_interval",
    "LOG_LEVEL": "log_level",
    "LOG_FORMAT": "log_format",
    "HEALTH_PORT": "health_port",
    "HEALTH_HOST": "health_host",
    "CONFIG_FILE": "config_file",
    "EVENT_SINK": "sink",
    "STATE_DIR": "state_dir",
    "STATE_FLUSH_INTERVAL": "state_flush_interval",
    "ALLOW_IN_CLUSTER": "allow_in_cluster",
    "ALLOW_KUBECONFIG_CONTEXTS": "allow_kubeconfig_contexts",
    "ALLOWED_SERVER_NETWORKS": "allowed_server_networks",
    "DENIED_SERVER_NETWORKS": "denied_server_networks",
    "MAX_CLUSTERS_PER_INTEGRATION": "max_clusters_per_integration",
    "MAX_NAMESPACES_PER_INTEGRATION": "max_namespaces_per_integration",
    "MAX_WATCHES_PER_TENANT": "max_watches_per_tenant",
    "MAX_TAGS": "max_tags",
    "MAX_TAG_LENGTH": "max_tag_length",
    "SHRINK_CONFIRMATIONS": "shrink_confirmations",
    "STATE_RETENTION": "state_retention",
    "LAST_SYNC_INTERVAL": "last_sync_interval",
    "STATUS_PUBLIC": "status_public",
    "WATCH_TIMEOUT": "watch_timeout",
    "STALL_MARGIN": "stall_margin",
    "STALL_PROBE_INTERVAL": "stall_probe_interval",
    "STALL_PROBE_RATE": "stall_probe_rate",
    "LIST_PAGE_SIZE": "list_page_size",
    "CONNECT_TIMEOUT": "connect_timeout",
    "MAX_LIST_PAGE_BYTES": "max_list_page_bytes",
    "MAX_WATCH_LINE_BYTES": "max_watch_line_bytes",
    "MAX_LIST_OBJECTS": "max_list_objects",
    "MAX_LIST_PAGES": "max_list_pages",
    "SENDERS": "senders",
    "MAX_ATTEMPTS": "max_attempts",
    "RETRY_INITIAL": "retry_initial",
    "RETRY_MAX": "retry_max",
    "MAX_EVENT_AGE": "max_event_age",
    "DRAIN_TIMEOUT": "drain_timeout",
    "OUTBOX_MAX": "outbox_max",
    "POST_TIMEOUT": "post_timeout",
    "EVENT_REPEAT_WINDOW": "event_repeat_window",
    "ROLLOUT_WINDOW": "rollout_window",
    "METRICS_PER_INTEGRATION": "metrics_per_integration",
    "SHARD_LEASE_NAMESPACE": "shard_lease_namespace",
    "SHARD_GROUP": "shard_group",
    "SHARD_IDENTITY": "shard_identity",
    "SHARD_KUBECONFIG": "shard_kubeconfig",
    "SHARD_CONTEXT": "shard_context",
    "SHARD_LEASE_SECONDS": "shard_lease_seconds",
    "SHARD_HANDOVER_SECONDS": "shard_handover_seconds",
}
FIELD_TO_ENV = {v: k for k, v in ENV_VARS.items()}


def load_settings(*, environ: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None) -> Settings:
    """Validate environment plus explicit overrides (flags win) into Settings, once."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {field: environ[var] for var, field in ENV_VARS.items() if environ.get(var, "") != ""}
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if raw.get("shard_lease_namespace") and not raw.get("shard_identity"):
        # A StatefulSet pod's name is stable across restarts: its Lease (and share) come back with it.
        raw["shard_identity"] = (environ.get("POD_NAME") or socket.gethostname()).lower()
    try:
        return _SettingsSchema().load(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{FIELD_TO_ENV.get(name, name)}: {' '.join(map(str, msgs))}" for name, msgs in sorted(exc.messages.items())
        )
        raise SettingsError(f"invalid settings: {problems}") from None
