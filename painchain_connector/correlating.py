"""The owner index and recent rollouts of each (integration, cluster): what pod detection
reads through `DetectContext.correlation` to name a pod's workload and a failure's rollout.

Owns, per pods watch (integration, cluster, namespace), two index watches: ReplicaSets
(apps/v1: pod -> ReplicaSet -> Deployment, and the revision) and Jobs (batch/v1: pod ->
Job -> CronJob). They are Reflectors whose detection never emits: their Store IS the
index ("namespace/name" -> OwnerEntry, about 400 bytes each: the Store key is the
compact's `uid` field, which an OwnerEntry fills with its name, as pods name owners). They start with the pods watch they
serve and stop with it, each in a named greenlet run by the WatchPool's guard.

Without permission to list them (403) the connector runs on: the index stays empty, pod
owners come from the Deployment naming rule without revision, and ONE warning per cluster
and resource says which permission would add it (retries stay at DEBUG, once per re-sync
period like every forbidden watch). Rollouts are recorded from the workload watches'
Updated events on their way to the outbox: bounded per workload and in total.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._log import logger
from .clusters import ApiError, ListerWatcher, ReadLimits
from .detecting.correlation import OwnerEntry, Rollout, controller_ref, rollout_of, REVISION
from .model import Change, WatchKey
from .objects import Owner, shaped
from .resources import ResourceType
from .watching import Emit, Reflector, Store

# Watched for the index only: never in RESOURCE_TYPES, never an event of their own.
INDEX_TYPES = (
    ResourceType("replicasets", "ReplicaSet", "/apis/apps/v1"),
    ResourceType("jobs", "Job", "/apis/batch/v1"),
)
WORKLOAD_RESOURCES = frozenset({"deployments", "statefulsets", "daemonsets"})
ROLLOUTS_PER_WORKLOAD = 3
MAX_ROLLOUT_WORKLOADS = 10_000
_DEGRADED = {
    "replicasets": "pod owners come from the Deployment naming rule <deployment>-<pod-template-hash>, "
                   "without the Deployment revision",
    "jobs": "pods of a CronJob's Jobs name the Job, not the CronJob",
}


def project_owner(_resource: str, obj: Owner | dict, seen_at: float | None = None) -> OwnerEntry:
    meta = shaped(obj, Owner).metadata
    ref = controller_ref(meta)
    revision = (meta.annotations or {}).get(REVISION)
    return OwnerEntry(
        uid=f"{meta.namespace or ''}/{meta.name or ''}",  # the Store key: pods name owners
        namespace=meta.namespace or "",
        name=meta.name or "",
        resource_version=meta.resource_version or "",
        owner_kind=ref[0] if ref else None,
        owner_name=ref[1] if ref else None,
        revision=int(revision) if revision and revision.isdigit() else None,
        seen_at=seen_at,
    )


def index_only(_resource: str, old, new, *, deleted: bool, ctx) -> tuple[list[Change], Any]:
    """The index watches' detection: keep the entry, emit nothing."""
    return [], (None if deleted else new)


class IndexReflector(Reflector):
    """A Reflector whose Store is an owner index; a 403 is logged once per cluster."""

    def __init__(self, *, correlation: "Correlation", **kwargs) -> None:
        super().__init__(**kwargs)
        self._project = project_owner
        self._detect = index_only
        self._correlation = correlation

    def _fail(self, exc: ApiError, *, level: str, state: str) -> None:
        if state == "forbidden":
            level = "WARNING" if self._correlation.first_forbidden(self.key.resource) else "DEBUG"
            self.metrics.watch_restarts.labels(self.key.resource, exc.reason).inc()
            rt = next(t for t in INDEX_TYPES if t.name == self.key.resource)
            where = f"namespace {self.key.namespace!r}" if self.key.namespace else "all namespaces"
            self.log.log(level, "cluster {!r}: no permission to list {} ({}): {}; grant get/list/watch on {} "
                         "(API group {!r}) in {} to add it", self.key.cluster, rt.name, exc.reason,
                         _DEGRADED[rt.name], rt.name, rt.api.split("/")[2], where)
            self.last_error = str(exc)
            self._set_state(state)
            return
        super()._fail(exc, level=level, state=state)


class Correlation:
    """One (integration, cluster): owner index Stores and recent rollouts (a CorrelationView)."""

    def __init__(self) -> None:
        self.stores: dict[tuple[str, str], Store] = {}  # (kind, namespace) -> index Store
        self._rollouts: dict[tuple[str, str, str], tuple[Rollout, ...]] = {}
        self._forbidden: set[str] = set()

    # -- CorrelationView ----------------------------------------------------------------

    def owner_entry(self, kind: str, namespace: str, name: str) -> OwnerEntry | None:
        key = f"{namespace}/{name}"
        for (store_kind, _), store in self.stores.items():
            if store_kind == kind and (found := store.objects.get(key)) is not None:
                return found
        return None

    def newest_revision(self, namespace: str, deployment: str) -> int | None:
        """The highest revision among the Deployment's ReplicaSets (on pod failures only)."""
        newest = None
        for (kind, _), store in self.stores.items():
            if kind != "ReplicaSet":
                continue
            for entry in store.objects.values():
                if (entry.owner_name == deployment and entry.namespace == namespace and entry.revision
                        and entry.owner_kind == "Deployment" and (newest is None or entry.revision > newest)):
                    newest = entry.revision
        return newest

    def rollouts(self, namespace: str, kind: str, name: str) -> tuple[Rollout, ...]:
        return self._rollouts.get((namespace, kind, name), ())

    # -- writers ------------------------------------------------------------------------

    def record(self, changes: list[Change]) -> None:
        for change in changes:
            rollout = rollout_of(change)
            if rollout is None:
                continue
            key = (rollout.namespace, rollout.kind, rollout.name)
            kept = tuple(r for r in self._rollouts.pop(key, ()) if r.external_id != rollout.external_id)
            self._rollouts[key] = (kept + (rollout,))[-ROLLOUTS_PER_WORKLOAD:]
            if len(self._rollouts) > MAX_ROLLOUT_WORKLOADS:  # the least recently updated go first
                del self._rollouts[next(iter(self._rollouts))]

    def recording(self, emit: Emit) -> Emit:
        """`emit` that first records the rollouts the changes start."""
        def emit_and_record(changes: list[Change]) -> None:
            self.record(changes)
            emit(changes)
        return emit_and_record

    def first_forbidden(self, resource: str) -> bool:
        if resource in self._forbidden:
            return False
        self._forbidden.add(resource)
        return True


class Correlations:
    """Every Correlation and index watch of a WatchPool (keyed dicts: watches never end)."""

    def __init__(self, *, make_reflector: Callable[..., Reflector], run: Callable[[Reflector], None],
                 spawn: Callable[[Callable, Reflector, str], Any]) -> None:
        self._make_reflector = make_reflector  # the pool's Reflector arguments (timing, metrics, sleep)
        self._run = run
        self._spawn = spawn
        self.by_cluster: dict[tuple[str, str], Correlation] = {}
        self.users: dict[tuple[str, str], set[WatchKey]] = {}
        self.indexes: dict[WatchKey, tuple[IndexReflector, Any]] = {}

    def acquire(self, key: WatchKey, *, api, connect_timeout: float, limits: ReadLimits = ReadLimits()) -> Correlation:
        """The cluster's Correlation; a pods watch also starts its namespace's index watches,
        bounded by the same read `limits` as every watch (a tenant's answers, whatever asked)."""
        cluster = (key.integration_id, key.cluster)
        correlation = self.by_cluster.get(cluster)
        if correlation is None:
            correlation = self.by_cluster[cluster] = Correlation()
        self.users.setdefault(cluster, set()).add(key)
        if key.resource == "pods":
            for rt in INDEX_TYPES:
                index_key = WatchKey(key.integration_id, key.cluster, rt.name, key.namespace)
                if index_key in self.indexes:
                    continue
                store = Store()
                correlation.stores[(rt.kind, key.namespace)] = store
                reflector = self._make_reflector(
                    IndexReflector, correlation=correlation, key=index_key, store=None,
                    lister_watcher=ListerWatcher(api, path=rt.path(key.namespace), connect_timeout=connect_timeout,
                                                 limits=limits, shape=Owner))
                reflector.store = store
                self.indexes[index_key] = (reflector, self._spawn(self._run, reflector, f"index:{index_key}"))
        return correlation

    def release(self, key: WatchKey) -> None:
        cluster = (key.integration_id, key.cluster)
        if key.resource == "pods":
            for rt in INDEX_TYPES:
                found = self.indexes.pop(WatchKey(key.integration_id, key.cluster, rt.name, key.namespace), None)
                if found is not None:
                    reflector, greenlet = found
                    greenlet.kill(block=True, timeout=5)
                    if not greenlet.dead:
                        logger.bind(**reflector.key.log_context()).error("index watch {} did not stop within 5 s",
                                                                         reflector.key)
                    reflector.close()
                    self.by_cluster[cluster].stores.pop((rt.kind, key.namespace), None)
        users = self.users.get(cluster)
        if users is not None:
            users.discard(key)
            if not users:
                del self.users[cluster]
                self.by_cluster.pop(cluster, None)
