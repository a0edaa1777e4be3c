"""Small builders shared by the e2e tests: integrations pointing at the test control plane,
and a collector of what the connector emitted."""
from __future__ import annotations

from painchain_connector.metrics import Metrics
from painchain_connector.model import Change, Route
from painchain_connector.orchestration import WatchPool, wanted_watches
from painchain_connector.resources import RESOURCE_NAMES
from painchain_connector.schemas.integration import Integration, parse_integration
from painchain_connector.watching import WatchTiming
from tests.envtest.fixtures import wait_for


# The test control plane (and the FaultyProxy) listen on 127.0.0.1: tenants' clusters there
# are refused by the egress policy unless the operator re-allows loopback, as these tests do.
LOOPBACK_ALLOWED = ("127.0.0.0/8",)


def integration_doc(*, server: str, token: str, ca_b64: str | None, id: str = "int-e2e", cluster: str = "envtest",
                    namespaces=(), resources=None, tenant: str | None = None, tags=("e2e",)) -> dict:
    cluster_doc = {"name": cluster, "server": server, "token": token}
    if ca_b64:
        cluster_doc["certificate"] = ca_b64
    config = {"name": id, "tags": list(tags), "clusters": [cluster_doc], "namespaces": list(namespaces)}
    if resources is not None:
        config["resources"] = resources
    return {"id": id, "tenantId": tenant, "type": "kubernetes", "status": "active", "config": config}


def make_integration(**kw) -> Integration:
    result = parse_integration(integration_doc(**kw))
    assert result.integration is not None, result.errors
    return result.integration


def only(*names: str) -> dict:
    return {r: r in names for r in RESOURCE_NAMES}


class Collector:
    """Records every change the watches emit, with its route."""

    def __init__(self) -> None:
        self.items: list[tuple[Route, Change]] = []

    def make_emit(self, route: Route):
        def emit(changes):
            self.items.extend((route, c) for c in changes)
        return emit

    def titles(self) -> list[str]:
        return [c.title for _, c in self.items]

    def external_ids(self) -> list[str]:
        return [c.external_id for _, c in self.items]

    def wait_titles(self, *titles: str, timeout: float = 20.0) -> list[str]:
        wait_for(lambda: all(t in self.titles() for t in titles), timeout=timeout,
                 message=f"titles {titles}; have {self.titles()}")
        return self.titles()


def fast_timing(**kw) -> WatchTiming:
    base = dict(watch_timeout=30.0, stall_margin=5.0, page_size=2, forbidden_retry=1.0, event_repeat_window=300.0)
    base.update(kw)
    return WatchTiming(**base)


def start_pool(integrations, *, collector: Collector, timing: WatchTiming | None = None, metrics=None):
    pool = WatchPool(make_emit=collector.make_emit, timing=timing or fast_timing(),
                     metrics=metrics or Metrics(), connect_timeout=5.0)
    counts = pool.adjust(wanted_watches(integrations))
    return pool, counts


def wait_watching(pool, timeout: float = 20.0, states=("watching",)):
    wait_for(lambda: pool.states() and all(s in states for s in pool.states().values()), timeout=timeout,
             message=f"all watches in {states}: {pool.states()}")
