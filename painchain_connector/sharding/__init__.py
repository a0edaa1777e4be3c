"""Scale-out: N replicas share the integrations through Kubernetes Leases (README "Scaling out").

    backend -> select -> share (this package: my part) -> reconcile -> watch -> ...

- `ownership`: rendezvous hashing, pure: who owns an integration given the live members.
- `leases`: the group's coordination.k8s.io/v1 Leases in the host cluster; liveness as
  observed locally (`MemberView`).
- `handover`: this replica's share plus a grace period for the integrations it just lost.
- `membership`: `Sharding`, owned by the Connector: the `sharding:leases` greenlet, the
  share, metrics and logs.

`build_sharding(settings, metrics)` returns None when sharding is off (no
SHARD_LEASE_NAMESPACE): one process owns everything, as before. Unusable host-cluster
credentials raise SettingsError. Importing this package
imports neither kubernetes nor urllib3.
"""
from __future__ import annotations

from .membership import ShardMetrics, ShardTiming, Sharding

__all__ = ["Sharding", "ShardTiming", "build_sharding"]


def build_sharding(settings, *, metrics) -> Sharding | None:
    if not settings.sharded:
        return None
    from ..settings import SettingsError
    from .leases import LeaseClient, LeaseUnavailable, build_host_client

    if not settings.shard_identity:  # Settings built by hand, not by load_settings
        raise SettingsError("invalid settings: SHARD_IDENTITY: required when SHARD_LEASE_NAMESPACE is set")
    timing = ShardTiming(lease=settings.shard_lease_seconds, handover=settings.shard_handover_seconds)
    try:
        api = build_host_client(kubeconfig=str(settings.shard_kubeconfig) if settings.shard_kubeconfig else None,
                                context=settings.shard_context, connect_timeout=settings.connect_timeout)
    except LeaseUnavailable as exc:  # a configuration problem: say so before anything starts
        raise SettingsError(f"invalid settings: SHARD_KUBECONFIG / SHARD_CONTEXT: {exc}") from None
    leases = LeaseClient(api, namespace=settings.shard_lease_namespace, group=settings.shard_group,
                         identity=settings.shard_identity, connect_timeout=min(settings.connect_timeout,
                                                                               timing.request_timeout),
                         request_timeout=timing.request_timeout)
    return Sharding(leases=leases, identity=settings.shard_identity, timing=timing,
                    metrics=ShardMetrics(metrics.registry, per_integration=settings.metrics_per_integration))
