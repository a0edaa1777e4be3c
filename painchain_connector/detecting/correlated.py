"""Wraps the kinds' projectors and detectors with correlation (correlation.py), so each
kind's module stays about its own rules: pods gain their owner and a failure's rollout,
workloads their revision and field manager, Services their creator.
"""
from __future__ import annotations

from collections.abc import Callable

from ..objects import Service, Workload
from .correlation import correlate_pod, correlate_service, correlate_workload, field_owners, workload_extra

_WORKLOADS = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}


def correlated(project: dict[str, Callable], detect: dict[str, Callable]) -> None:
    """Replace, in place, the entries of the resources correlation adds data to."""
    for resource, kind in _WORKLOADS.items():
        project[resource] = _project_workload(project[resource])
        detect[resource] = _detect_workload(kind, detect[resource])
    project["services"] = _project_service(project["services"])
    detect["services"] = _detect_service(detect["services"])
    detect["pods"] = _detect_pod(detect["pods"])


def _project_workload(inner):
    def project(obj: Workload, seen_at: float | None = None):
        compact = inner(obj, seen_at)
        return compact._replace(**workload_extra(obj, compact.images))
    return project


def _detect_workload(kind: str, inner):
    def detect(old, new, *, deleted, ctx):
        changes, state = inner(old, new, deleted=deleted, ctx=ctx)
        return correlate_workload(kind, changes, old, new), state
    return detect


def _project_service(inner):
    def project(obj: Service, seen_at: float | None = None):
        return inner(obj, seen_at)._replace(owners=field_owners(obj.metadata))
    return project


def _detect_service(inner):
    def detect(old, new, *, deleted, ctx):
        changes, state = inner(old, new, deleted=deleted, ctx=ctx)
        return correlate_service(changes, new), state
    return detect


def _detect_pod(inner):
    def detect(old, new, *, deleted, ctx):
        changes, state = inner(old, new, deleted=deleted, ctx=ctx)
        return correlate_pod(changes, new if new is not None else old, ctx), state
    return detect
