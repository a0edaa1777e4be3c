"""The group's `coordination.k8s.io/v1` Leases in the host cluster, and who is alive.

`LeaseClient` renews this replica's own Lease (named after its identity, labelled with
the group), lists the group's Leases and deletes its own on a clean stop, through the
official client's CoordinationV1Api (cooperative under gevent). Answers are read as raw
JSON (`_preload_content=False`): the Lease model's MicroTime round trip is lossy, and
timestamps are written here in the exact form the apiserver parses.

`MemberView` decides liveness the way client-go's leader election does: a Lease is alive
while its record (holder, renewTime, duration) changed within its own duration *as
observed by this replica's monotonic clock*; the holder's clock is never trusted.

How it fails: every call raises `LeaseUnavailable` (host cluster down, refused, timed out,
RBAC) with a message safe to log; the caller keeps its last view. Starts no greenlets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

GROUP_LABEL = "painchain.io/shard-group"


class LeaseUnavailable(Exception):
    """The Leases could not be read or written; `str()` is safe to log."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def micro_time(when: datetime) -> str:
    """metav1.MicroTime as the apiserver parses it: RFC 3339, 6 fraction digits, UTC."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_host_client(*, kubeconfig: str | None, context: str | None, connect_timeout: float):
    """An ApiClient for the host cluster: SHARD_KUBECONFIG/SHARD_CONTEXT when given, else
    the pod's service account, else the default kubeconfig. Raises LeaseUnavailable."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    cfg = k8s.Configuration()
    try:
        if kubeconfig or context:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                        persist_config=False)
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=cfg)
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(client_configuration=cfg, persist_config=False)
    except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise LeaseUnavailable(f"no credentials for the host cluster's Leases: {type(exc).__name__}: {exc}") from None
    cfg.retries = False  # the membership loop retries on its own schedule
    api = k8s.ApiClient(cfg)
    api.user_agent = "painchain-kubernetes-connector/sharding"
    return api


class LeaseClient:
    """This replica's Lease and the group's Leases in one namespace of the host cluster."""

    def __init__(self, api_client, *, namespace: str, group: str, identity: str,
                 connect_timeout: float, request_timeout: float) -> None:
        from kubernetes import client as k8s

        self._api_client = api_client
        self.api = k8s.CoordinationV1Api(api_client)
        self.namespace, self.group, self.identity = namespace, group, identity
        self._timeout = (connect_timeout, request_timeout)
        self._resource_version: str | None = None  # of our own Lease, as last written
        self._acquired: str | None = None

    def _call(self, what: str, fn, *args, **kwargs) -> dict:
        from kubernetes.client.exceptions import ApiException
        import urllib3

        try:
            raw = fn(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
            try:
                return json.loads(raw.data or b"{}")
            finally:
                raw.release_conn()
        except ApiException as exc:
            status = exc.status or None
            reason = f"HTTP {status}" if status else f"TLS: {exc.reason}"
            if status in (401, 403):
                reason += " (needs get, list, create, update, delete on leases.coordination.k8s.io in " \
                          f"namespace {self.namespace!r})"
            raise LeaseUnavailable(f"{what}: {reason}", status=status) from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise LeaseUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None

    def _body(self, *, duration: int, now: datetime) -> dict:
        if self._acquired is None:
            self._acquired = micro_time(now)
        metadata = {"name": self.identity, "namespace": self.namespace, "labels": {GROUP_LABEL: self.group}}
        if self._resource_version:
            metadata["resourceVersion"] = self._resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(duration),
                     "acquireTime": self._acquired, "renewTime": micro_time(now)},
        }

    def renew(self, *, duration: int, now: datetime) -> None:
        """Write our Lease with renewTime = now: replace it when we know its version,
        create it when missing, take it over when a previous run of ours left it."""
        if self._resource_version is not None:
            try:
                self._write(self.api.replace_namespaced_lease, self.identity, duration=duration, now=now)
                return
            except LeaseUnavailable as exc:
                if exc.status not in (404, 409):
                    raise
                self._resource_version = None  # someone deleted or changed it: start over
        try:
            self._write(self.api.create_namespaced_lease, duration=duration, now=now)
        except LeaseUnavailable as exc:
            if exc.status != 409:
                raise
            current = self._call("get own lease", self.api.read_namespaced_lease, self.identity, self.namespace)
            self._resource_version = (current.get("metadata") or {}).get("resourceVersion")
            self._write(self.api.replace_namespaced_lease, self.identity, duration=duration, now=now)

    def _write(self, method, *name, duration: int, now: datetime) -> None:
        answer = self._call("renew lease", method, *name, self.namespace, self._body(duration=duration, now=now))
        self._resource_version = (answer.get("metadata") or {}).get("resourceVersion")

    def list(self) -> list[dict]:
        answer = self._call("list leases", self.api.list_namespaced_lease, self.namespace,
                            label_selector=f"{GROUP_LABEL}={self.group}")
        return answer.get("items") or []

    def release(self) -> None:
        """Delete our Lease so that the others take over at their next look, not after it
        expires. A missing Lease is fine."""
        try:
            self._call("delete lease", self.api.delete_namespaced_lease, self.identity, self.namespace)
        except LeaseUnavailable as exc:
            if exc.status != 404:
                raise
        self._resource_version = None

    def close(self) -> None:
        self._api_client.close()


@dataclass
class _Seen:
    record: tuple
    observed_at: float
    duration: float


class MemberView:
    """Liveness of the group's Leases as observed here (a monotonic clock passed in)."""

    def __init__(self, *, settle: float = 0.0) -> None:
        self._seen: dict[str, _Seen] = {}
        self._blind_since: float | None = None
        # After a time without any answer, a Lease that was alive then is given `settle`
        # seconds to show a renewal before it counts as dead: not seeing is not evidence
        # of death, and declaring everyone dead at once would make every replica start
        # every integration together.
        self.settle = settle

    def observe(self, leases: Iterable[dict], now: float) -> None:
        fresh: dict[str, _Seen] = {}
        for lease in leases:
            name = (lease.get("metadata") or {}).get("name")
            spec = lease.get("spec") or {}
            if not name:
                continue
            record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds"))
            duration = float(spec.get("leaseDurationSeconds") or 0)
            before = self._seen.get(name)
            if before is not None and before.record == record:
                observed_at = before.observed_at
                if self._blind_since is not None and self._blind_since - observed_at < duration:
                    observed_at = max(observed_at, now - duration + self.settle)
                fresh[name] = _Seen(record, observed_at, duration)
            else:
                fresh[name] = _Seen(record, now, duration)
        self._seen = fresh
        self._blind_since = None

    def failed(self, now: float) -> None:
        """A list failed: remember since when we have been blind."""
        if self._blind_since is None:
            self._blind_since = now

    def alive(self, now: float) -> tuple[str, ...]:
        """Names of live Leases (holder set, renewed within their duration), sorted."""
        return tuple(sorted(name for name, seen in self._seen.items()
                            if seen.record[0] and now - seen.observed_at < seen.duration))
