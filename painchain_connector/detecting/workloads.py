"""The workload spec shared by Deployments, StatefulSets and DaemonSets: their compact,
and the Scaled / Updated rules (a spec change, told apart from status churn by generation).
An Updated event says exactly what changed (`data.changes`, built by specdiff.py).

Pure, like every detection module: time comes from the objects or from their `seen_at`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from ..model import Change, DetectContext
from ..objects import ManagedMeta, Workload
from . import specdiff
from .common import (
    Compact,
    MAX_LABELS,
    TRUNCATED_LABELS_KEY,
    clip,
    external_id,
    happened,
    istr,
    labels_dict,
    lifecycle,
    listed,
    make_change,
    old_new,
)


def newest_spec_write(meta: ManagedMeta) -> str | None:
    """Time of the newest managedFields entry that is not a status write (RFC 3339 sorts)."""
    newest = None
    for entry in meta.managed_fields or ():
        stamp = entry.time
        if stamp and entry.subresource != "status" and (newest is None or stamp > newest):
            newest = stamp
    return newest


class WorkloadCompact(Compact):
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
    strategy: str
    fingerprint: bytes  # digest of the spec without replicas
    observed_generation: int = 0
    progressing: tuple | None = None  # Deployments: (status, reason, lastTransitionTime, lastUpdateTime)
    done_generation: int = 0  # Deployments: generation whose rollout outcome is already known
    seen_at: float | None = None  # epoch seconds when the connector first saw this version
    # specdiff.pack of the images, labels and flattened spec: read only to report a change.
    # None when projected by a version that did not keep it (a persisted state from
    # before): then no diff is guessed.
    cold: bytes | None = None
    # correlation.py: revision annotation, change cause, status update/current revisions,
    # field owners (creator, spec, replicas, template, images) and the pod template's digest
    revision: str | None = None
    change_cause: str | None = None
    update_revision: str | None = None
    current_revision: str | None = None
    owners: tuple = ()
    template_digest: bytes = b""

    @property
    def images(self) -> tuple:
        """((container, image), ...), init containers included."""
        return specdiff.unpack(self.cold)[0]

    @property
    def labels(self) -> tuple:
        return specdiff.unpack(self.cold)[1]

    @property
    def spec(self) -> tuple | None:
        return specdiff.unpack(self.cold)[2]


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
    obj: Workload, *, scalable: bool, status: tuple, strategy: Mapping[str, Any] | None,
    seen_at: float | None = None, strategy_key: str = "strategy", **extra: Any
) -> WorkloadCompact:
    meta = obj.metadata
    uid, name, namespace, resource_version = (meta.uid or "", meta.name or "", istr(meta.namespace),
                                              meta.resource_version or "")
    spec = obj.spec or {}
    replicas = spec.get("replicas", 1) if scalable else None  # the apiserver defaults it to 1
    if type(replicas) is int and not -(2**63) <= replicas < 2**63:
        raise ValueError("spec.replicas beyond int64")  # the spec is free-form: checked here
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    # App containers first: data["image"] is the first one's, and an init container's rarely matters.
    containers = list(pod_spec.get("containers") or ()) + list(pod_spec.get("initContainers") or ())
    images = tuple((istr(c.get("name")), istr(c.get("image"))) for c in containers)
    rest = {key: value for key, value in spec.items() if key != "replicas"}
    digest = hashlib.blake2b(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
    strategy_words = strategy_summary(strategy)
    return WorkloadCompact(
        uid=uid,
        name=name,
        namespace=namespace,
        resource_version=resource_version,
        created=meta.creation_timestamp,
        deleted_at=meta.deletion_timestamp,
        generation=meta.generation or 0,
        spec_time=newest_spec_write(meta),
        replicas=replicas,
        status=status,
        strategy=strategy_words,
        fingerprint=digest,
        seen_at=seen_at,
        cold=specdiff.pack(images=images, labels=_flat_labels(meta.labels),
                           spec=specdiff.flatten(spec, uid=uid, strategy_key=strategy_key, strategy=strategy_words)),
        **extra,
    )


def _flat_labels(labels: Mapping[str, Any] | None) -> tuple:
    """(k1, v1, ...) of at most MAX_LABELS entries, unshared: a workload's labels are packed
    with its spec, so the label tables shared between pods would only hold a copy."""
    flat: list = []
    for index, (key, value) in enumerate((labels or {}).items()):
        if index == MAX_LABELS:
            flat += (TRUNCATED_LABELS_KEY, f"{len(labels) - MAX_LABELS} more")
            break
        flat += (str(key), str(value))
    return tuple(flat)


def spec_changes_list(old: WorkloadCompact, new: WorkloadCompact) -> list[dict[str, Any]] | None:
    """What an Updated event lists as changed; None when `old` kept no spec to compare."""
    before, after = old.spec, new.spec
    if before is None or after is None:
        return None
    found = specdiff.diff(before, after)
    if new.replicas is not None and old.replicas != new.replicas:
        found.insert(0, {"path": "replicas", "change": "changed", **old_new(old.replicas, new.replicas)})
    if not found and old.fingerprint != new.fingerprint:
        found.append({"path": specdiff.OTHER_FIELDS, "change": "changed"})
    return found


def images_data(images: tuple) -> list[dict[str, str]]:
    return [{"container": container, "image": image} for container, image in images]


def workload_data(d: WorkloadCompact, counts: Mapping[str, int]) -> dict[str, Any]:
    """The data every workload event carries: scalars first (a generic renderer shows them
    as they are), then the images list with its one-line summary, then labels."""
    data: dict[str, Any] = {"name": d.name, "namespace": d.namespace}
    if d.replicas is not None:
        data["replicas"] = d.replicas
    data.update(counts)
    images, labels, _ = specdiff.unpack(d.cold)
    if images:
        data["image"] = images[0][1]
    data["generation"] = d.generation
    data["strategy"] = d.strategy
    listed(images_data(images), data, "images", lambda i: f"{i['container']}={i['image']}")
    data["labels"] = labels_dict(labels)
    return data


def describe(d: WorkloadCompact) -> str:
    """'3 replicas of registry.example/app:1.0' (the words after "created: ")."""
    images = d.images
    image = images[0][1] if images else "no image"
    more = f" (+{len(images) - 1} more containers)" if len(images) > 1 else ""
    replicas = "" if d.replicas is None else f"{d.replicas} replica{'' if d.replicas == 1 else 's'} of "
    return replicas + image + more


TITLE_CHANGES = 3  # changes named in an Updated title; the rest are counted


def _updated(kind: str, old: WorkloadCompact, new: WorkloadCompact,
             data: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Title, summary and data of an Updated change: `changes` (with `changesSummary`), and
    the first changed image as container/image/previousImage."""
    changes = spec_changes_list(old, new)
    data = {**data, "previousGeneration": old.generation}
    for entry in changes or ():
        if entry["path"].endswith("].image") and entry["change"] == "changed":
            data.update(container=entry["path"].split("[", 1)[1].rsplit("]", 1)[0], image=entry["new"],
                        previousImage=entry["old"])
            break
    title = f"{kind} Updated: {new.name}"
    if not changes:
        return title, f"{kind} {new.name} updated to generation {new.generation}: spec changed", data
    listed(changes, data, "changes", specdiff.words)
    named = [specdiff.words(entry, 60) for entry in changes[:TITLE_CHANGES]]
    more = len(changes) - len(named)
    title += ": " + ", ".join(named) + (f" and {more} more" if more else "")
    summary = f"{kind} {new.name} updated to generation {new.generation}: " + ", ".join(
        specdiff.words(entry, 80) for entry in changes[:specdiff.MAX_CHANGES])
    return clip(title, 480), summary, data


def spec_changes(kind: str, old: WorkloadCompact, new: WorkloadCompact, ctx: DetectContext, data: dict[str, Any]) -> list[Change]:
    """Scaled (spec.replicas changed) and Updated (generation bumped by a change of the spec
    besides replicas)."""
    changes = []
    scaled = new.replicas is not None and old.replicas != new.replicas
    stamp = happened((new.spec_time,), old=old, new=new, ctx=ctx)
    if scaled:
        changes.append(
            make_change(
                title=f"{kind} Scaled: {new.name} ({old.replicas} → {new.replicas})",
                timestamp=stamp,
                external_id=external_id(ctx, kind, new.namespace, new.name, new.uid, "Scaled", new.generation),
                namespace=new.namespace,
                kind=kind,
                reason="Scaled",
                summary=f"{kind} {new.name} scaled from {old.replicas} to {new.replicas} replica"
                + ("" if new.replicas == 1 else "s"),
                data={"reason": "Scaled", **data, "previousReplicas": old.replicas,
                      "changed": {"replicas": old_new(old.replicas, new.replicas)}},
            )
        )
    # Not the generation alone: a Deployment's generation also moves when only the object's
    # own annotations change, and that is no change of what runs.
    if new.generation > old.generation and old.fingerprint != new.fingerprint:
        title, summary, updated = _updated(kind, old, new, data)
        changes.append(
            make_change(
                title=title,
                timestamp=stamp,
                external_id=external_id(ctx, kind, new.namespace, new.name, new.uid, "Updated", new.generation),
                namespace=new.namespace,
                kind=kind,
                reason="Updated",
                summary=summary,
                data={"reason": "Updated", **updated},
            )
        )
    return changes


def detect_workload(
    kind: str, old: WorkloadCompact | None, new: WorkloadCompact | None, *, deleted: bool, ctx: DetectContext,
    data,
) -> tuple[list[Change], WorkloadCompact | None]:
    """Created/Deleted, then Scaled/Updated from the spec: the whole rule set of StatefulSets
    and DaemonSets (Deployments add their rollout outcome on top)."""
    outcome = lifecycle(kind, old, new, deleted=deleted, ctx=ctx, data=data, describe=describe)
    if outcome is not None:
        return outcome
    return spec_changes(kind, old, new, ctx, data(new)), new
