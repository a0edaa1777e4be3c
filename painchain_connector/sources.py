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
from typing import Any, Iterable

import yaml

from .logs import register_secrets
from .schemas.integration import Integration, ParseResult, parse_integration


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


def _secrets_of(doc: Any) -> list[str]:
    """Tokens and CA bundles of a raw document, valid or not, for the log redactor."""
    config = doc.get("config") if isinstance(doc, dict) else None
    clusters = config.get("clusters") if isinstance(config, dict) else None
    found: list[str] = []
    for cluster in clusters if isinstance(clusters, list) else ():
        if isinstance(cluster, dict):
            found.extend(v for k in ("token", "certificate") if isinstance(v := cluster.get(k), str) and v)
    return found


def _refuse_local_credentials(result: ParseResult, *, allow_in_cluster: bool, allow_contexts: bool) -> ParseResult:
    """Drop clusters whose credentials are the connector's own (its service account, its
    kubeconfig) when the documents come from a backend that other tenants can write to."""
    integ = result.integration
    refused = [c for c in integ.clusters
               if (c.in_cluster and not allow_in_cluster) or (c.context and not allow_contexts)]
    if not refused:
        return result
    errors = result.errors + tuple(
        f"cluster {c.name!r}: {'inCluster' if c.in_cluster else 'kubeconfig context'} credentials are not accepted "
        f"from the backend by this connector (see ALLOW_IN_CLUSTER / ALLOW_KUBECONFIG_CONTEXTS)."
        for c in refused
    )
    kept = tuple(c for c in integ.clusters if c not in refused)
    return ParseResult(dataclasses.replace(integ, clusters=kept) if kept else None, result.integration_id, errors)


def select(docs: Iterable[Any], *, allow_in_cluster: bool = True, allow_contexts: bool = True) -> Fetched:
    """Pure (but for registering secrets with the log redactor): documents -> Fetched.

    Keeps `type == "kubernetes"` only (the backend ignores the query parameter), skips
    `status == "inactive"` before parsing, and parses each remaining document on its own.
    `rejected` holds every document with errors: wholly invalid ones (integration None)
    and partially valid ones (some clusters rejected; the integration is also kept).
    A repeated id is rejected after its first occurrence.
    """
    docs = list(docs)
    register_secrets(s for doc in docs for s in _secrets_of(doc))
    valid: list[Integration] = []
    rejected: list[ParseResult] = []
    inactive = partial = 0
    seen: set[str] = set()
    for doc in docs:
        if isinstance(doc, dict):
            if doc.get("type") != "kubernetes":
                continue
            if doc.get("status") == "inactive":
                inactive += 1
                continue
        result = parse_integration(doc)
        if result.integration is not None:
            result = _refuse_local_credentials(result, allow_in_cluster=allow_in_cluster, allow_contexts=allow_contexts)
        if result.integration is not None and result.integration.id in seen:
            result = ParseResult(None, result.integration_id, ("id: duplicate integration id in the list.",))
        if result.integration is None:
            rejected.append(result)
            continue
        seen.add(result.integration.id)
        valid.append(result.integration)
        if result.errors:
            partial += 1
            rejected.append(result)
    return Fetched(tuple(valid), tuple(rejected), inactive, partial)


class BackendSource:
    """Integrations from PainChain. Documents there are written by tenants, so clusters that
    would use the connector's own credentials (inCluster: its service account; context: its
    kubeconfig) are accepted only when the operator allows them."""

    def __init__(self, backend, *, allow_in_cluster: bool = False, allow_contexts: bool = True) -> None:
        self.backend = backend
        self.allow_in_cluster = allow_in_cluster
        self.allow_contexts = allow_contexts

    def fetch(self) -> Fetched:
        from .backend import TransientError, PermanentError

        try:
            docs = self.backend.list_integrations()
        except (TransientError, PermanentError) as exc:
            raise FetchFailed(f"cannot list integrations from the backend: {exc}") from None
        if not isinstance(docs, list):
            raise FetchFailed("the backend's integration list is not a JSON array")
        return select(docs, allow_in_cluster=self.allow_in_cluster, allow_contexts=self.allow_contexts)


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
