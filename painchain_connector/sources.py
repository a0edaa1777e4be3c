"""Where integrations come from: the PainChain backend, or (local mode) a file or kubeconfig.

A source's `fetch()` returns `Fetched`: the valid integrations and the rejected documents
with their reasons (already safe to log: no secrets). It raises `FetchFailed` when the
list could not be read at all; the caller then keeps the current watches running.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .egress import url_problem
from .logs import set_secrets
from .schemas.integration import Integration, Limits, ParseResult, parse_integration


class FetchFailed(Exception):
    """The integrations could not be read; the message is safe to log."""


class NoClusterConfigured(Exception):
    """Local mode with neither a config file nor a kubeconfig: the message says what to do."""


@dataclass(frozen=True)
class Fetched:
    integrations: tuple[Integration, ...]
    rejected: tuple[ParseResult, ...] = ()
    inactive: int = 0
    partial: int = 0  # valid integrations with some clusters rejected
    # Every kubernetes document's id in the list, whatever its state (inactive and invalid
    # included): only an id missing from here is "gone" (its queued events may be dropped).
    present: frozenset[str] = frozenset()
    # tenantId of every present document that has a usable one: where a rejected
    # integration's problem is reported.
    tenants: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    statuses: Mapping[str, str] = dataclasses.field(default_factory=dict)  # id -> the backend's status


def _secrets_of(doc: Any) -> list[str]:
    """Tokens and CA bundles of a raw document, valid or not, for the log redactor (the
    clusters may be the text the PainChain UI's text area stored)."""
    config = doc.get("config") if isinstance(doc, dict) else None
    clusters = config.get("clusters") if isinstance(config, dict) else None
    if isinstance(clusters, str) and len(clusters) < 1_000_000:
        try:
            clusters = json.loads(clusters)
        except (ValueError, RecursionError):
            clusters = None
    found: list[str] = []
    for cluster in clusters if isinstance(clusters, list) else ():
        if isinstance(cluster, dict):
            found.extend(v for k in ("token", "certificate") if isinstance(v := cluster.get(k), str) and v)
    return found


def _public_words(docs: list) -> list[str]:
    """Ids, tenant ids and names in the list: a "token" found inside one of these is not a
    secret but an attempt to blank them out of the operator's log."""
    words: list[str] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        words.extend(v for k in ("id", "tenantId", "name") if isinstance(v := doc.get(k), str))
        config = doc.get("config")
        if isinstance(config, dict):
            words.extend(v for v in (config.get("name"),) if isinstance(v, str))
    return words


def _refuse_local_credentials(result: ParseResult, *, tenant: bool, allow_in_cluster: bool,
                              allow_contexts: bool, restrict: bool) -> ParseResult:
    """Drop clusters whose credentials are the connector's own (its service account, its
    kubeconfig) when a tenant wrote them, and mark a tenant's token clusters `restricted`
    (the egress policy then applies; https only)."""
    integ = result.integration
    kept: list = []
    errors = list(result.errors)
    for c in integ.clusters:
        if c.in_cluster and not allow_in_cluster:
            errors.append(f"cluster {c.name!r}: inCluster credentials are not accepted from the backend by this "
                          f"connector (see ALLOW_IN_CLUSTER).")
            continue
        if c.context and tenant and not allow_contexts:
            errors.append(f"cluster {c.name!r}: kubeconfig context credentials are accepted for tenant-less "
                          f"integrations only (see ALLOW_KUBECONFIG_CONTEXTS).")
            continue
        if restrict and tenant and c.server is not None:
            problem = url_problem(c.server, restricted=True)
            if problem:
                errors.append(f"cluster {c.name!r}: server: {problem}")
                continue
            c = dataclasses.replace(c, restricted=True)
        kept.append(c)
    if kept == list(integ.clusters) and len(errors) == len(result.errors):
        return result
    return ParseResult(dataclasses.replace(integ, clusters=tuple(kept)) if kept else None, result.integration_id,
                       tuple(errors))


def watch_count(integ: Integration) -> int:
    return len(integ.clusters) * len(integ.resources.enabled()) * max(1, len(integ.namespaces))


def select(docs: Iterable[Any], *, allow_in_cluster: bool = True, allow_contexts: bool = True,
           restrict_tenants: bool = False, limits: Limits = Limits()) -> Fetched:
    """Pure (but for registering secrets with the log redactor): documents -> Fetched.

    Keeps `type == "kubernetes"` only (the backend ignores the query parameter), skips
    `status == "inactive"` before parsing, and parses each remaining document on its own.
    `rejected` holds every document with errors: wholly invalid ones (integration None)
    and partially valid ones (some clusters rejected; the integration is also kept).
    A repeated id is rejected after its first occurrence; an integration that would take
    its tenant past `limits.watches_per_tenant` is rejected (the list's order decides, so
    the tenant's newest integration is the one refused).
    """
    docs = [d for d in docs if not isinstance(d, dict) or d.get("type") == "kubernetes"]
    public = _public_words(docs)
    owners: set[str] = set()
    for doc in docs:
        owner = doc.get("id") if isinstance(doc, dict) and isinstance(doc.get("id"), str) else None
        if owner and owner not in owners:  # a repeated id is rejected: its first document is the one served
            owners.add(owner)
            set_secrets(owner, _secrets_of(doc), public=public)
    valid: list[Integration] = []
    rejected: list[ParseResult] = []
    inactive = partial = 0
    seen: set[str] = set()
    present: set[str] = set()
    tenants: dict[str, str | None] = {}
    statuses: dict[str, str] = {}
    budget: dict[str, int] = {}
    for doc in docs:
        if isinstance(doc, dict):
            if isinstance(doc.get("id"), str) and doc["id"] and doc["id"] not in present:
                present.add(doc["id"])
                tenant = doc.get("tenantId")
                if tenant is None or (isinstance(tenant, str) and tenant):
                    tenants[doc["id"]] = tenant
                if isinstance(doc.get("status"), str):
                    statuses[doc["id"]] = doc["status"]
            if doc.get("status") == "inactive":
                inactive += 1
                continue
        result = parse_integration(doc, limits=limits)
        if result.integration is not None:
            result = _refuse_local_credentials(
                result, tenant=result.integration.tenant_id is not None, allow_in_cluster=allow_in_cluster,
                allow_contexts=allow_contexts, restrict=restrict_tenants)
        if result.integration is not None and result.integration.id in seen:
            result = ParseResult(None, result.integration_id, ("id: duplicate integration id in the list.",))
        integ = result.integration
        if integ is not None and integ.tenant_id is not None:
            used = budget.get(integ.tenant_id, 0) + watch_count(integ)
            if used > limits.watches_per_tenant:
                result = ParseResult(None, result.integration_id, result.errors + (
                    f"config: this integration needs {watch_count(integ)} watches (clusters x resources x "
                    f"namespaces), more than its tenant has left of {limits.watches_per_tenant}.",))
            else:
                budget[integ.tenant_id] = used
        if result.integration is None:
            rejected.append(result)
            continue
        seen.add(result.integration.id)
        valid.append(result.integration)
        if result.errors:
            partial += 1
            rejected.append(result)
    return Fetched(tuple(valid), tuple(rejected), inactive, partial, frozenset(present), tenants, statuses)


class BackendSource:
    """Integrations from PainChain. Documents there are written by tenants, so clusters that
    would use the connector's own credentials (inCluster: its service account; context: its
    kubeconfig) are accepted only when the operator allows them."""

    def __init__(self, backend, *, allow_in_cluster: bool = False, allow_contexts: bool = False,
                 limits: Limits = Limits()) -> None:
        self.backend = backend
        self.allow_in_cluster = allow_in_cluster
        self.allow_contexts = allow_contexts
        self.limits = limits

    def fetch(self) -> Fetched:
        from .backend import TransientError, PermanentError

        try:
            docs = self.backend.list_integrations()
        except (TransientError, PermanentError) as exc:
            raise FetchFailed(f"cannot list integrations from the backend: {exc}") from None
        if not isinstance(docs, list):
            raise FetchFailed("the backend's integration list is not a JSON array")
        return select(docs, allow_in_cluster=self.allow_in_cluster, allow_contexts=self.allow_contexts,
                      restrict_tenants=True, limits=self.limits)


class LocalSource:
    """Integrations from `--config FILE` (JSON or YAML list), else the current kubeconfig context."""

    def __init__(self, *, config_file: Path | None, environ=os.environ) -> None:
        self.config_file = config_file
        self.environ = environ

    def fetch(self) -> Fetched:
        if self.config_file is not None:
            return select(self._read_file())
        return select([self.default_integration(self.environ)])

    def _read_file(self) -> list:
        try:
            text = self.config_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise FetchFailed(f"cannot read {self.config_file}: {exc.strerror}") from None
        try:
            docs = json.loads(text) if self.config_file.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            # Only the position: a parser message can quote the offending line (a token).
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "lineno", None)
            raise FetchFailed(f"{self.config_file} is not valid JSON/YAML (near {mark})") from None
        if isinstance(docs, dict):
            docs = [docs]
        if not isinstance(docs, list):
            raise FetchFailed(f"{self.config_file} must hold a list of integrations")
        # A local file may leave out what the backend always sends.
        return [{"type": "kubernetes", "status": "active", **d} if isinstance(d, dict) else d for d in docs]

    @staticmethod
    def default_integration(environ) -> dict:
        """One integration: the current kubeconfig context (or in-cluster), all namespaces."""
        from kubernetes import config as k8s_config

        try:
            _contexts, active = k8s_config.list_kube_config_contexts(
                config_file=environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
            )
            cluster = {"name": active["name"], "context": active["name"]}
        except (k8s_config.ConfigException, OSError, TypeError, KeyError):
            if not environ.get("KUBERNETES_SERVICE_HOST"):
                raise NoClusterConfigured(
                    "no cluster to watch: there is no kubeconfig (~/.kube/config or $KUBECONFIG) and no "
                    "--config file. Point the connector at a cluster with KUBECONFIG=/path/to/kubeconfig, "
                    "or give --config integrations.yaml (a list of integrations, see README 'Local mode'), "
                    "or run against a PainChain backend with --backend URL / BACKEND_API_URL. "
                    "To try the connector first, --demo (tox -e demo) runs it on an embedded cluster."
                ) from None
            cluster = {"name": "in-cluster", "inCluster": True}
        return {
            "id": "local",
            "tenantId": None,
            "type": "kubernetes",
            "name": "local",
            "status": "active",
            "config": {"name": "local", "tags": [], "clusters": [cluster]},
        }
