"""Detection: decoded Kubernetes objects (objects.py shapes) → compact state → significant changes.

`project(resource, obj)` keeps only what detection and event data need (it runs on every
watch event and is stored per object, so it is small and fast). `obj` is the Struct the
watch decoded, or a plain map of the object (converted to that shape first). `detect(...)` compares
two compacts and returns the changes plus the state to store. Both are pure: no I/O, no
clock reads, no logging; missing fields yield sparse data, not an exception.

The caller projects the initial list of a watch without detecting (a baseline), so
`detect(old=None, ...)` is only called for objects that are genuinely new.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..model import Change, DetectContext
from ..objects import SHAPES, shaped
from . import deployments, events, pods, services
from .correlated import correlated
from .events import EventCompact
from .pods import PodCompact
from .services import ServiceCompact
from .sets import DAEMONSETS, STATEFULSETS
from .workloads import WorkloadCompact

Compact = PodCompact | WorkloadCompact | ServiceCompact | EventCompact

_MODULES = {
    "pods": pods,
    "deployments": deployments,
    "services": services,
    "statefulsets": STATEFULSETS,
    "daemonsets": DAEMONSETS,
    "events": events,
}
# resource -> kind
RESOURCES: Mapping[str, str] = {name: getattr(m, "KIND", None) or m.kind for name, m in _MODULES.items()}
_PROJECT: dict[str, Callable[[Any, float | None], Compact]] = {name: m.project for name, m in _MODULES.items()}
_DETECT = {name: m.detect for name, m in _MODULES.items()}
correlated(_PROJECT, _DETECT)  # owners, revisions, rollouts and field managers in the data

__all__ = ["RESOURCES", "Compact", "detect", "project"]


def project(resource: str, obj: Any, seen_at: float | None = None) -> Compact:
    """The compact projection of one raw object of `resource` (a key of RESOURCES).

    `seen_at` (epoch seconds) is when the connector observed this version; it stays with
    the stored compact, so the next change can tell a fresh object time from a stale one.
    """
    try:
        projector = _PROJECT[resource]
    except KeyError:
        raise ValueError(f"unknown resource {resource!r}") from None
    if type(obj) is dict:
        obj = shaped(obj, SHAPES[resource])
    return projector(obj, seen_at)


def detect(
    resource: str, old: Compact | None, new: Compact | None, *, deleted: bool, ctx: DetectContext
) -> tuple[list[Change], Compact | None]:
    """Significant changes from `old` to `new`, and the state to store (None once deleted).

    `old` is None for an object new to us; with `deleted=True`, `new` is the final object
    (watch DELETED) or None (it vanished between two lists).
    """
    try:
        detector = _DETECT[resource]
    except KeyError:
        raise ValueError(f"unknown resource {resource!r}") from None
    return detector(old, new, deleted=deleted, ctx=ctx)
