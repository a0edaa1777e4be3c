"""Helpers every kind's detection shares: ids, timestamps, size bounds, compact building blocks.

Pure: no I/O and no clock reads (time comes from the objects or from `DetectContext`).
The only module state is the bounded tables behind `Shared`, which let identical
tuples (the labels of 100 replicas, their container specs) be stored once; they change
memory use, never a result.
"""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from ..model import CLUSTER_SCOPE, Change, DetectContext

MAX_EXTERNAL_ID = 254  # the backend's limit is 255
MAX_MESSAGE = 4096  # characters of a free-text message kept in a compact
MAX_SHORT_MESSAGE = 1024  # container state / termination messages (per container)
MAX_LABELS = 64  # label entries kept per map
MAX_ITEMS = 20  # containers, ports, images listed in one change's data
MAX_DATA_CHARS = 64 * 1024  # hard guard on json.dumps(data); the backend answers 413 at 100 KB
TRUNCATED = "…(truncated)"
TRUNCATED_LABELS_KEY = "…(truncated)"  # never a valid label key, so it cannot collide

intern = sys.intern


class Shared:
    """Canonical instances of equal hashable values, in a bounded table (cleared when full)."""

    __slots__ = ("_limit", "_table")

    def __init__(self, limit: int = 4096) -> None:
        self._table: dict = {}
        self._limit = limit

    def __call__(self, value):
        found = self._table.get(value)
        if found is None:
            if len(self._table) >= self._limit:
                self._table.clear()
            self._table[value] = found = value
        return found

    def clear(self) -> None:
        self._table.clear()


share_labels = Shared()
share_items = Shared()  # container tuples, condition tuples, port tuples, image tuples


# ---------------------------------------------------------------- projection helpers


def clip(text: Any, limit: int = MAX_MESSAGE) -> str | None:
    """A string no longer than `limit` (+ marker), or None for empty input."""
    if not text:
        return None
    if not isinstance(text, str):
        text = str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATED


def istr(value: Any) -> str:
    """An interned string (low-cardinality values: namespaces, phases, reasons, images)."""
    if value is None:
        return ""
    return intern(value if type(value) is str else str(value))


_labels_by_raw = Shared(1024)  # raw items tuple -> its projection (a hit skips interning)


def project_labels(labels: Mapping[str, Any] | None) -> tuple:
    """Flat (k1, v1, k2, v2, ...) tuple of at most MAX_LABELS entries, shared between equals."""
    if not labels:
        return ()
    try:
        raw = tuple(labels.items())
        known = _labels_by_raw._table.get(raw)
    except TypeError:  # an unhashable value in a malformed object: no shortcut
        raw = known = None
    if known is not None:
        return known
    projected = _project_labels(labels)
    if raw is not None:
        _labels_by_raw._table[raw] = projected
        if len(_labels_by_raw._table) > _labels_by_raw._limit:
            _labels_by_raw.clear()
    return projected


def _project_labels(labels: Mapping[str, Any]) -> tuple:
    flat: list[str] = []
    for index, (key, value) in enumerate(labels.items()):
        if index == MAX_LABELS:
            flat += (TRUNCATED_LABELS_KEY, f"{len(labels) - MAX_LABELS} more")
            break
        flat += (istr(key), istr(value))
    return share_labels(tuple(flat))


def labels_dict(flat: tuple) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2]))


def meta_strings(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str, str, str]:
    """(metadata, uid, name, namespace, resourceVersion) of a raw object."""
    meta = obj.get("metadata") or {}
    return (
        meta,
        meta.get("uid") or "",
        meta.get("name") or "",
        istr(meta.get("namespace")),
        meta.get("resourceVersion") or "",
    )


def newest_spec_write(meta: Mapping[str, Any]) -> str | None:
    """Time of the newest managedFields entry that is not a status write (RFC 3339 sorts)."""
    newest = None
    for entry in meta.get("managedFields") or ():
        stamp = entry.get("time")
        if stamp and entry.get("subresource") != "status" and (newest is None or stamp > newest):
            newest = stamp
    return newest


# ---------------------------------------------------------------- time


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 (as the apiserver writes Time and MicroTime) to an aware UTC datetime."""
    if not value:
        return None
    try:
        if value.endswith("Z"):
            value = value[:-1] + "+00:00"  # fromisoformat accepts "Z" only from 3.11
        stamp = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def observed(ctx: DetectContext) -> datetime:
    stamp = ctx.observed_at
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def when(value: str | None, ctx: DetectContext) -> datetime:
    """The object's own time when it has one, else when the change was observed."""
    return parse_time(value) or observed(ctx)


# ---------------------------------------------------------------- ids and changes


def external_id(ctx: DetectContext, kind: str, namespace: str | None, name: str, uid: str, change: str, *discriminators: Any) -> str:
    """`k8s:{cluster}:{kind}:{namespace}/{name}:{uid}:{change}[:{discriminator}...]`.

    Built only from the cluster's facts, so one change observed twice gets one id. Over
    MAX_EXTERNAL_ID characters, the tail becomes the first 24 hex of sha256(full id).
    """
    head = f"k8s:{ctx.cluster}:{kind}:{namespace or CLUSTER_SCOPE}/{name}"
    full = ":".join([head, uid, change, *(str(part) for part in discriminators)])
    if len(full) <= MAX_EXTERNAL_ID:
        return full
    tail = f":{change[:64]}:{hashlib.sha256(full.encode()).hexdigest()[:24]}"
    return head[: MAX_EXTERNAL_ID - len(tail)] + tail


def bounded(data: dict[str, Any]) -> dict[str, Any]:
    """`data` when its JSON is under MAX_DATA_CHARS; else without its largest fields, marked."""
    size = len(orjson.dumps(data))  # runs for every change: orjson is ~10x cheaper here (bench #1)
    if size <= MAX_DATA_CHARS:
        return data
    sizes = sorted(((len(orjson.dumps(value)), key) for key, value in data.items()), reverse=True)
    kept = dict(data)
    dropped = []
    for field_size, key in sizes:
        if size <= MAX_DATA_CHARS - 200:
            break
        del kept[key]
        dropped.append(key)
        size -= field_size
    kept["truncated"] = True
    kept["droppedFields"] = dropped
    return kept


def make_change(
    *, title: str, timestamp: datetime, external_id: str, namespace: str | None, kind: str, reason: str,
    data: dict[str, Any],
) -> Change:
    return Change(
        title=clip(title, 480) or kind,
        timestamp=timestamp,
        external_id=external_id,
        namespace=namespace or None,
        kind=kind,
        reason=reason,
        data=bounded(data),
    )


def listed(items: Iterable[dict[str, Any]], data: dict[str, Any], key: str) -> None:
    """Put at most MAX_ITEMS of `items` under data[key]; mark data[key + 'Truncated'] if cut."""
    items = list(items)
    data[key] = items[:MAX_ITEMS]
    if len(items) > MAX_ITEMS:
        data[key + "Truncated"] = True
        data[key + "Total"] = len(items)


def old_new(old: Any, new: Any) -> dict[str, Any]:
    return {"old": old, "new": new}


# ---------------------------------------------------------------- workload spec (Deployment, StatefulSet, DaemonSet)


class WorkloadCompact(NamedTuple):
    """What detection keeps of a Deployment, StatefulSet or DaemonSet."""

    uid: str
    name: str
    namespace: str
    resource_version: str
    created: str | None
    deleted_at: str | None
    generation: int
    spec_time: str | None  # newest non-status managedFields time: when the spec was written
    replicas: int | None  # spec.replicas (None for DaemonSets)
    status: tuple  # kind-specific counts, named in each kind's module
    images: tuple  # ((container, image), ...), init containers included
    strategy: str
    template_labels: tuple
    env_count: int
    restarted_at: str | None  # template annotation written by `kubectl rollout restart`
    fingerprint: bytes  # digest of the spec without replicas
    labels: tuple
    observed_generation: int = 0
    progressing: tuple | None = None  # Deployments: (status, reason, lastTransitionTime, lastUpdateTime)
    done_generation: int = 0  # Deployments: generation whose rollout outcome is already known


def strategy_summary(strategy: Mapping[str, Any] | None) -> str:
    """`RollingUpdate(maxSurge=25%, maxUnavailable=25%)`, `Recreate`, `OnDelete`..."""
    if not strategy:
        return ""
    kind = strategy.get("type") or ""
    params = strategy.get("rollingUpdate")
    if params:
        kind += "(" + ", ".join(f"{key}={params[key]}" for key in sorted(params)) + ")"
    return istr(kind)


def project_workload(
    obj: Mapping[str, Any], *, scalable: bool, status: tuple, strategy: Mapping[str, Any] | None, **extra: Any
) -> WorkloadCompact:
    meta, uid, name, namespace, resource_version = meta_strings(obj)
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    template_meta = template.get("metadata") or {}
    pod_spec = template.get("spec") or {}
    containers = list(pod_spec.get("initContainers") or ()) + list(pod_spec.get("containers") or ())
    images = share_items(tuple((istr(c.get("name")), istr(c.get("image"))) for c in containers))
    rest = {key: value for key, value in spec.items() if key != "replicas"}
    digest = hashlib.blake2b(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
    return WorkloadCompact(
        uid=uid,
        name=name,
        namespace=namespace,
        resource_version=resource_version,
        created=meta.get("creationTimestamp"),
        deleted_at=meta.get("deletionTimestamp"),
        generation=meta.get("generation") or 0,
        spec_time=newest_spec_write(meta),
        replicas=spec.get("replicas", 1) if scalable else None,  # the apiserver defaults it to 1
        status=status,
        images=images,
        strategy=strategy_summary(strategy),
        template_labels=project_labels(template_meta.get("labels")),
        env_count=sum(len(c.get("env") or ()) for c in containers),
        restarted_at=(template_meta.get("annotations") or {}).get("kubectl.kubernetes.io/restartedAt"),
        fingerprint=digest,
        labels=project_labels(meta.get("labels")),
        **extra,
    )


def spec_differences(old: WorkloadCompact, new: WorkloadCompact) -> dict[str, Any]:
    """What changed in the spec besides replicas, in the terms a user reads a diff in."""
    changed: dict[str, Any] = {}
    if old.images != new.images:
        before, after = dict(old.images), dict(new.images)
        images = {
            container: old_new(before.get(container), after.get(container))
            for container in list(before) + [c for c in after if c not in before]
            if before.get(container) != after.get(container)
        }
        changed["images"] = dict(list(images.items())[:MAX_ITEMS])
    if old.strategy != new.strategy:
        changed["strategy"] = old_new(old.strategy, new.strategy)
    if old.template_labels != new.template_labels:
        changed["templateLabels"] = old_new(labels_dict(old.template_labels), labels_dict(new.template_labels))
    if old.env_count != new.env_count:
        changed["envCount"] = old_new(old.env_count, new.env_count)
    if old.restarted_at != new.restarted_at:
        changed["restartedAt"] = old_new(old.restarted_at, new.restarted_at)
    if not changed and old.fingerprint != new.fingerprint:
        changed["other"] = "pod template or spec fields not summarized here"
    return changed


def images_data(images: tuple) -> list[dict[str, str]]:
    return [{"container": container, "image": image} for container, image in images]


def lifecycle(
    kind: str, old: WorkloadCompact | None, new: WorkloadCompact | None, *, deleted: bool, ctx: DetectContext, data
) -> tuple[list[Change], WorkloadCompact | None] | None:
    """Created / Deleted, shared by every workload kind; None when neither applies."""
    if deleted:
        last = new or old
        if last is None:
            return [], None
        return [gone(kind, last, ctx, data(last))], None
    if new is None:
        return [], old
    if old is None:
        return [born(kind, new, ctx, data(new))], new
    return None


def born(kind: str, compact, ctx: DetectContext, data: dict[str, Any]) -> Change:
    return make_change(
        title=f"{kind} Created: {compact.name}",
        timestamp=when(compact.created, ctx),
        external_id=external_id(ctx, kind, compact.namespace, compact.name, compact.uid, "Created"),
        namespace=compact.namespace,
        kind=kind,
        reason="Created",
        data=data,
    )


def gone(kind: str, compact, ctx: DetectContext, data: dict[str, Any]) -> Change:
    return make_change(
        title=f"{kind} Deleted: {compact.name}",
        timestamp=when(compact.deleted_at, ctx),
        external_id=external_id(ctx, kind, compact.namespace, compact.name, compact.uid, "Deleted"),
        namespace=compact.namespace,
        kind=kind,
        reason="Deleted",
        data=data,
    )


def spec_changes(kind: str, old: WorkloadCompact, new: WorkloadCompact, ctx: DetectContext, data: dict[str, Any]) -> list[Change]:
    """Scaled (spec.replicas changed) and Updated (generation bumped by anything else)."""
    changes = []
    scaled = new.replicas is not None and old.replicas != new.replicas
    stamp = when(new.spec_time, ctx)
    if scaled:
        changes.append(
            make_change(
                title=f"{kind} Scaled: {new.name} ({old.replicas} → {new.replicas})",
                timestamp=stamp,
                external_id=external_id(ctx, kind, new.namespace, new.name, new.uid, "Scaled", new.generation),
                namespace=new.namespace,
                kind=kind,
                reason="Scaled",
                data={**data, "changed": {"replicas": old_new(old.replicas, new.replicas)}},
            )
        )
    if new.generation > old.generation and (old.fingerprint != new.fingerprint or not scaled):
        changes.append(
            make_change(
                title=f"{kind} Updated: {new.name}",
                timestamp=stamp,
                external_id=external_id(ctx, kind, new.namespace, new.name, new.uid, "Updated", new.generation),
                namespace=new.namespace,
                kind=kind,
                reason="Updated",
                data={**data, "changed": spec_differences(old, new), "generation": old_new(old.generation, new.generation)},
            )
        )
    return changes


def detect_workload(
    kind: str, old: WorkloadCompact | None, new: WorkloadCompact | None, *, deleted: bool, ctx: DetectContext,
    data,
) -> tuple[list[Change], WorkloadCompact | None]:
    """Created/Deleted, then Scaled/Updated from the spec: the whole rule set of StatefulSets
    and DaemonSets (Deployments add their rollout outcome on top)."""
    outcome = lifecycle(kind, old, new, deleted=deleted, ctx=ctx, data=data)
    if outcome is not None:
        return outcome
    return spec_changes(kind, old, new, ctx, data(new)), new
