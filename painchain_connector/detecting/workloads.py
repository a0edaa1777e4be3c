"""The workload spec shared by Deployments, StatefulSets and DaemonSets: their compact,
and the Scaled / Updated rules (a spec change, told apart from status churn by generation).

Pure, like every detection module: time comes from the objects or from their `seen_at`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from ..model import Change, DetectContext
from .common import (
    MAX_ITEMS,
    external_id,
    happened,
    istr,
    labels_dict,
    lifecycle,
    listed,
    make_change,
    meta_strings,
    old_new,
    project_labels,
    share_items,
)


def newest_spec_write(meta: Mapping[str, Any]) -> str | None:
    """Time of the newest managedFields entry that is not a status write (RFC 3339 sorts)."""
    newest = None
    for entry in meta.get("managedFields") or ():
        stamp = entry.get("time")
        if stamp and entry.get("subresource") != "status" and (newest is None or stamp > newest):
            newest = stamp
    return newest


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
    seen_at: float | None = None  # epoch seconds when the connector first saw this version
    # correlation.py: revision annotation, change cause, status update/current revisions,
    # field owners (creator, spec, replicas, template, images) and the pod template's digest
    revision: str | None = None
    change_cause: str | None = None
    update_revision: str | None = None
    current_revision: str | None = None
    owners: tuple = ()
    template_digest: bytes = b""


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
    obj: Mapping[str, Any], *, scalable: bool, status: tuple, strategy: Mapping[str, Any] | None,
    seen_at: float | None = None, **extra: Any
) -> WorkloadCompact:
    meta, uid, name, namespace, resource_version = meta_strings(obj)
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    template_meta = template.get("metadata") or {}
    pod_spec = template.get("spec") or {}
    # App containers first: data["image"] is the first one's, and an init container's rarely matters.
    containers = list(pod_spec.get("containers") or ()) + list(pod_spec.get("initContainers") or ())
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
        seen_at=seen_at,
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


def workload_data(d: WorkloadCompact, counts: Mapping[str, int]) -> dict[str, Any]:
    """The data every workload event carries: scalars first (a generic renderer shows them
    as they are), then the images list with its one-line summary, then labels."""
    data: dict[str, Any] = {"name": d.name, "namespace": d.namespace}
    if d.replicas is not None:
        data["replicas"] = d.replicas
    data.update(counts)
    if d.images:
        data["image"] = d.images[0][1]
    data["generation"] = d.generation
    data["strategy"] = d.strategy
    listed(images_data(d.images), data, "images", lambda i: f"{i['container']}={i['image']}")
    data["labels"] = labels_dict(d.labels)
    return data


def describe(d: WorkloadCompact) -> str:
    """'3 replicas of registry.example/app:1.0' (the words after "created: ")."""
    image = d.images[0][1] if d.images else "no image"
    more = f" (+{len(d.images) - 1} more containers)" if len(d.images) > 1 else ""
    replicas = "" if d.replicas is None else f"{d.replicas} replica{'' if d.replicas == 1 else 's'} of "
    return replicas + image + more


def _updated(kind: str, old: WorkloadCompact, new: WorkloadCompact, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Summary and data of an Updated change: the first changed image as image/previousImage."""
    changed = spec_differences(old, new)
    data = {**data, "previousGeneration": old.generation}
    words = []
    for container, images in (changed.get("images") or {}).items():
        if "previousImage" not in data:
            data.update(container=container, image=images["new"], previousImage=images["old"])
        words.append(f"{container} image {images['old'] or '(none)'} → {images['new'] or '(removed)'}")
    words += [_SPEC_WORDS[key] for key in changed if key in _SPEC_WORDS]
    summary = f"{kind} {new.name} updated to generation {new.generation}: " + (", ".join(words) or "spec changed")
    data["changed"] = changed
    return summary, data


_SPEC_WORDS = {"strategy": "strategy changed", "templateLabels": "pod labels changed",
               "envCount": "environment changed", "restartedAt": "rollout restart", "other": "spec changed"}


def spec_changes(kind: str, old: WorkloadCompact, new: WorkloadCompact, ctx: DetectContext, data: dict[str, Any]) -> list[Change]:
    """Scaled (spec.replicas changed) and Updated (generation bumped by anything else)."""
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
    if new.generation > old.generation and (old.fingerprint != new.fingerprint or not scaled):
        summary, updated = _updated(kind, old, new, data)
        changes.append(
            make_change(
                title=f"{kind} Updated: {new.name}",
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
