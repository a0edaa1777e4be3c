"""Correlation in the event data: which workload a pod belongs to, which rollout a pod
failure follows, and who (which field manager) made a workload or Service change.

Pure like the rest of detection: the owner index (ReplicaSets, Jobs) and the recent
rollouts reach it through `DetectContext.correlation` (a read-only `CorrelationView`,
None when nothing is indexed), and nothing here reads a clock or does I/O. `wrap()` adds
the correlation fields to the changes of the kinds' own detectors, so those modules only
project the few fields it reads (a pod's controller reference, a workload's revision and
field owners).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

import orjson

from ..model import Change, DetectContext
from ..objects import ManagedMeta, ObjectMeta, Workload
from .common import Compact, clip, istr, labels_dict, listed, share_items

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
TEMPLATE_HASH = "pod-template-hash"
REVISION_HASH = "controller-revision-hash"
# Pod reasons that are a failure a rollout may have caused (container_change / _failed reasons).
FAILURES = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "Terminated", "Evicted", "Failed"})
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


class OwnerEntry(Compact):
    """What the owner index keeps per ReplicaSet or Job (see correlating.py)."""

    uid: str  # the index key: "namespace/name" (pods keep only their owner's kind and name)
    namespace: str
    name: str
    resource_version: str
    owner_kind: str | None  # the controller reference: Deployment, CronJob, ... (None: bare)
    owner_name: str | None
    revision: int | None  # ReplicaSets: deployment.kubernetes.io/revision
    seen_at: float | None = None


SECOND = timedelta(seconds=1)


class Rollout(NamedTuple):
    """A workload's Updated event, as recorded for later pod failures."""

    kind: str
    namespace: str
    name: str
    started_at: datetime
    revision: str | None
    images: tuple  # ((container, image), ...)
    external_id: str


class CorrelationView(Protocol):
    """What pod detection may read of one cluster's index (correlating.Correlation)."""

    def owner_entry(self, kind: str, namespace: str, name: str) -> OwnerEntry | None: ...

    def newest_revision(self, namespace: str, deployment: str) -> int | None: ...

    def rollouts(self, namespace: str, kind: str, name: str) -> tuple[Rollout, ...]: ...


# ---------------------------------------------------------------- projection helpers


def controller_ref(meta: ObjectMeta) -> tuple | None:
    """(kind, name) of the controlling owner reference, interned and shared between the
    replicas naming it; None for a bare object. (No uid: the index is keyed by name, and
    a uid per pod would cost ~100 bytes of store each.)"""
    refs = meta.owner_references
    if not refs:
        return None
    for ref in refs:
        if ref.controller:
            break
    else:
        ref = refs[0]
    if not (ref.kind or ref.name):
        return None  # an empty reference (the apiserver refuses them) names no owner
    key = (ref.kind or "", ref.name or "")
    found = _shared.get(key)
    return found if found is not None else share_items((istr(ref.kind), istr(ref.name)))


_shared = share_items._table


def _owns(fields: Any, path: tuple[str, ...]) -> bool:
    for step in path:
        if not isinstance(fields, Mapping) or step not in fields:
            return False
        fields = fields[step]
    return True


def _newest(entries: list, path: tuple[str, ...]) -> tuple | None:
    """(manager, time) of the newest entry owning `path` (a later entry wins a tie: seconds)."""
    best, best_time = None, ""
    for manager, stamp, fields in entries:
        if _owns(fields, path) and (stamp or "") >= best_time:
            best, best_time = manager, stamp or ""
    return (best, best_time or None) if best else None


def field_owners(meta: ManagedMeta, containers: tuple = ()) -> tuple:
    """(creator, spec, replicas, template, ((container, image owner), ...)): the creator's
    manager, and (manager, time) pairs of the newest owners of those fields.

    From `managedFields`: the apiserver moves a field's ownership to whoever last changed
    it, so the owner of `spec.replicas` after a scale is the scaler. Entries without
    fieldsV1 (some fixtures) count as owning the whole spec.
    """
    entries = []
    for entry in meta.managed_fields or ():
        fields = entry.fields_v1
        if entry.subresource == "status" or (fields is not None and "f:spec" not in fields):
            continue  # status writes and metadata-only writes (the revision annotation) change no spec
        if fields is None:
            fields = {"f:spec": {"f:replicas": {}, "f:template": {}}}
        entries.append((istr(entry.manager or "unknown"), entry.time, fields))
    if not entries:
        return ()
    creator = min(entries, key=lambda e: e[1] or "")[0]  # a manager name, not a pair
    images = tuple(
        (name, _newest(entries, ("f:spec", "f:template", "f:spec", "f:containers", f'k:{{"name":"{name}"}}', "f:image"))
         or _newest(entries, ("f:spec", "f:template")))
        for name, _ in containers
    )
    return (creator, _newest(entries, ("f:spec",)), _newest(entries, ("f:spec", "f:replicas")),
            _newest(entries, ("f:spec", "f:template")), images)


def template_digest(spec: Mapping[str, Any]) -> bytes:
    return hashlib.blake2b(orjson.dumps(spec.get("template") or {}, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()


def workload_extra(obj: Workload, images: tuple) -> dict[str, Any]:
    """The WorkloadCompact fields correlation reads (revision, cause, owners, template digest)."""
    meta = obj.metadata
    annotations = meta.annotations or {}
    status = obj.status
    return {
        "revision": annotations.get(REVISION),
        "change_cause": clip(annotations.get(CHANGE_CAUSE), 256),
        "update_revision": status.update_revision,
        "current_revision": status.current_revision,
        "owners": field_owners(meta, images),
        "template_digest": template_digest(obj.spec or {}),
    }


# ---------------------------------------------------------------- who changed it


def changed_by(reason: str, old: Any, new: Any) -> str | None:
    """The field manager behind a Created, Scaled or Updated change of a workload.

    None when the owning entry (manager and time) is the same as before the change: it
    did not record this change. (Before Kubernetes 1.22 a write through the `scale`
    subresource, which `kubectl scale` and autoscalers use, updates no managedFields
    entry: naming the field's previous owner would name the wrong tool.)
    """
    owners = getattr(new, "owners", None)
    if not owners:
        return None
    if reason == "Created":
        return owners[0]
    if old is None:
        return None
    owner = _owner_of(reason, old, new, owners)
    if owner is None or (getattr(old, "owners", None) and owner == _owner_of(reason, old, new, old.owners)):
        return None
    return owner[0]


def _owner_of(reason: str, old: Any, new: Any, owners: tuple) -> tuple | None:
    _, spec, replicas, template, images = owners
    if reason == "Scaled":
        return replicas or spec
    if reason != "Updated":
        return None
    before = dict(old.images)
    changed = [container for container, image in new.images if before.get(container) != image]
    if changed:
        return dict(images).get(changed[0]) or template or spec
    if getattr(old, "template_digest", None) != getattr(new, "template_digest", None):
        return template or spec
    return spec


def tool(manager: str | None) -> str | None:
    """kubectl's per-command managers (kubectl-edit, kubectl-client-side-apply, ...) as `kubectl`."""
    if manager and manager.startswith("kubectl-"):
        return "kubectl"
    return manager


# ---------------------------------------------------------------- revision and rollout


def predicted_revision(old: Any, new: Any) -> str | None:
    """The Deployment's revision for an Updated event.

    The deployment controller writes the revision annotation moments AFTER the spec write
    that starts a rollout: a pod-template change makes revision max+1 (a rollback too), so
    when the template changed and the annotation has not moved yet, that is the revision.
    """
    revision = new.revision
    if old is None or not revision or not str(revision).isdigit():
        return revision
    if revision == old.revision and old.template_digest != new.template_digest:
        return str(int(revision) + 1)
    return revision


def workload_fields(kind: str, reason: str, old: Any, new: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if kind == "Deployment":
        fields["revision"] = predicted_revision(old, new) if reason == "Updated" else new.revision
        fields["changeCause"] = new.change_cause
    else:
        fields["updateRevision"] = new.update_revision
        fields["currentRevision"] = new.current_revision
    if reason in ("Created", "Scaled", "Updated"):
        manager = changed_by(reason, old, new)
        fields["changedBy"] = tool(manager)
        if manager != fields["changedBy"]:
            fields["fieldManager"] = manager
    return fields


def pod_owner(pod: Any, view: CorrelationView | None) -> tuple[str, str, int | None] | None:
    """(kind, name, revision) of the top-level workload of `pod`, or None for a bare pod.

    Pod -> ReplicaSet -> Deployment and Pod -> Job -> CronJob through the index; without
    the ReplicaSet (not indexed yet, or no permission to list them) the Deployment naming
    rule `<deployment>-<pod-template-hash>` still names the Deployment, without revision.
    """
    ref = getattr(pod, "owner", None)
    if not ref:
        return None
    kind, name = ref
    entry = view.owner_entry(kind, pod.namespace, name) if view is not None and kind in ("ReplicaSet", "Job") else None
    if entry is not None:
        if entry.owner_kind and entry.owner_name:
            return entry.owner_kind, entry.owner_name, entry.revision
        return kind, name, None  # a bare ReplicaSet or Job is the workload itself
    if kind == "ReplicaSet":
        pod_hash = labels_dict(pod.labels).get(TEMPLATE_HASH)
        if pod_hash and name.endswith("-" + pod_hash):
            return "Deployment", name[: -len(pod_hash) - 1], None
    return kind, name, None


def _rollout(change: Change, owner: tuple, pod: Any, view: CorrelationView) -> Rollout | None:
    kind, name, revision = owner
    if kind not in ROLLOUT_KINDS:
        return None
    # Kubernetes stamps a failure to the second (finishedAt), while an Updated event may
    # carry the sub-second time it was observed: a failure in the same second still follows.
    stamp = change.timestamp + SECOND
    found = None
    for rollout in view.rollouts(pod.namespace, kind, name):
        if rollout.started_at < stamp and (found is None or rollout.started_at > found.started_at):
            found = rollout
    return found


def correlate_pod(changes: list[Change], pod: Any, ctx: DetectContext) -> list[Change]:
    """Every Pod change gets `owner`; a failure soon after its workload's rollout names it."""
    if not changes or pod is None:
        return changes
    view = ctx.correlation
    owner = pod_owner(pod, view)
    labels = labels_dict(pod.labels)
    extra: dict[str, Any] = {}
    if owner is not None:
        extra["owner"] = {"kind": owner[0], "name": owner[1]}
        extra["ownerSummary"] = f"{owner[0]} {owner[1]}"
        if owner[2] is not None and owner[0] == "Deployment":
            extra["revision"] = str(owner[2])
    extra["podTemplateHash"] = labels.get(TEMPLATE_HASH)
    extra["controllerRevisionHash"] = labels.get(REVISION_HASH)
    extra = {key: value for key, value in extra.items() if value}
    if not extra:
        return changes
    window = timedelta(seconds=ctx.rollout_window)
    result = []
    for change in changes:
        data, title = change.data, change.title
        rollout = _rollout(change, owner, pod, view) if owner and view and change.reason in FAILURES else None
        fields = extra
        if rollout is not None and change.timestamp - rollout.started_at <= window:
            revision = rollout.revision
            if owner[0] == "Deployment":
                newest = max((r for r in (owner[2], view.newest_revision(pod.namespace, owner[1])) if r), default=None)
                if newest is not None and (not revision or not revision.isdigit() or newest > int(revision)):
                    revision = str(newest)
            elif extra.get("controllerRevisionHash"):
                revision = extra["controllerRevisionHash"]
            words = f"{rollout.kind} {rollout.name}" + (f" to revision {revision}" if revision else "")
            info: dict[str, Any] = {"kind": rollout.kind, "name": rollout.name, "revision": revision,
                                    "startedAt": rollout.started_at.isoformat().replace("+00:00", "Z"),
                                    "externalId": rollout.external_id}
            listed(({"container": c, "image": i} for c, i in rollout.images), info, "images")
            # the one-line summary beside the owner (read first), the object at the end
            fields = {**extra, "rolloutSummary": f"{words}, started {info['startedAt']}"}
            data = {**data, "rollout": {k: v for k, v in info.items() if v}}
            title = f"{title} after rollout of {words}"
        data = _insert_after(data, "namespace", fields)
        result.append(Change(clip(title, 480), change.timestamp, change.external_id, change.namespace, change.kind,
                             change.reason, data))  # not dataclasses.replace: ~4x its cost (bench #1)
    return result


def _insert_after(data: Mapping[str, Any], key: str, extra: dict[str, Any]) -> dict[str, Any]:
    """`data` with `extra` placed right after `key` (a generic renderer shows fields in order)."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        out[name] = value
        if name == key:
            out.update(extra)
    if key not in data:
        out.update(extra)
    return out


def correlate_workload(kind: str, changes: list[Change], old: Any, new: Any) -> list[Change]:
    """Deployments/StatefulSets/DaemonSets: revision, change cause, update revision, changedBy."""
    if not changes:
        return changes
    result = []
    for change in changes:
        subject = new if new is not None else old
        if subject is None or not hasattr(subject, "owners"):
            result.append(change)
            continue
        extra = {k: v for k, v in workload_fields(kind, change.reason, old if old is not new else None,
                                                  subject).items() if v}
        result.append(replace(change, data=_insert_after(change.data, "namespace", extra)) if extra else change)
    return result


def correlate_service(changes: list[Change], new: Any) -> list[Change]:
    creator = (getattr(new, "owners", None) or (None,))[0]
    if not creator:
        return changes
    extra = {"changedBy": tool(creator)}
    if creator != extra["changedBy"]:
        extra["fieldManager"] = creator
    return [replace(c, data=_insert_after(c.data, "namespace", extra)) if c.reason == "Created" else c
            for c in changes]


def rollout_of(change: Change) -> Rollout | None:
    """The Rollout an Updated change of a workload starts (recorded by correlating.py)."""
    if change.kind not in ROLLOUT_KINDS or change.reason != "Updated":
        return None
    data = change.data
    images = tuple((i.get("container"), i.get("image")) for i in data.get("images") or ())
    revision = data.get("revision") or data.get("updateRevision")
    return Rollout(change.kind, data.get("namespace") or change.namespace or "", data.get("name") or "",
                   change.timestamp, revision, images, change.external_id)
