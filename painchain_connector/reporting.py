"""Tells each tenant how its integration is doing, where the tenant looks: in PainChain.

Once per re-sync the Connector hands the Reporter what it serves, what the backend's list
said, and the state of every watch. The Reporter then

- sets the integration's `status` (PUT /integrations/{id}, tenant header): "error" when
  its config was rejected (even if the last known good config still runs), or when every
  cluster has been failing (invalid, unreachable, unauthorized, forbidden, refused by the
  egress policy) for two re-syncs; "active" again when that ends. An `inactive`
  integration is never touched, and `error` ones keep being watched;
- sets `lastSync` at most every `last_sync_interval` per integration, and on every status
  change;
- posts one PainChain event on the integration's own timeline when a distinct problem
  starts, and one when it is resolved (project `<cluster>:_integration`, or
  `_integration` for config problems). Cluster problems count once seen on two re-syncs
  in a row (a watch that is still connecting is not a problem); config problems at once.
  externalIds are deterministic per problem and hour, so a flapping problem costs at
  most one event pair per hour.

The PUTs run in the Reporter's own bounded greenlet pool (`reporter-put`): a slow or
failing backend never delays a re-sync, and failures are logged at debug level by the
backend client. Problem events go through the outbox like every other event. Messages
are built from the reasons the validation and the watches already made safe to log.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from gevent.pool import Pool

from ._log import logger
from .model import Change, Outgoing, Route, WatchKey
from .schemas.event import to_outgoing
from .schemas.integration import Integration
from .sources import Fetched

# The namespace part of an integration problem's project ("<cluster>:_integration").
INTEGRATION_SCOPE = "_integration"
FAILING = frozenset({"invalid", "unreachable", "unauthorized", "forbidden", "refused"})
_WORDS = {
    "config": "configuration rejected",
    "invalid": "cluster credentials unusable",
    "unreachable": "cluster unreachable",
    "unauthorized": "credentials rejected (401)",
    "forbidden": "missing permissions (403)",
    "refused": "server address not allowed",
}


@dataclass(frozen=True)
class WatchHealth:
    key: WatchKey
    state: str
    message: str | None = None


@dataclass(frozen=True)
class Problem:
    integration_id: str
    kind: str  # a key of _WORDS
    cluster: str | None  # None: the integration's config
    message: str

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.integration_id, self.kind, self.cluster)


def cluster_problems(health: Iterable[WatchHealth]) -> tuple[dict[tuple[str, str], bool], list[Problem]]:
    """Pure: watch states -> ({(integration, cluster): every watch failing}, problems)."""
    by_cluster: dict[tuple[str, str], list[WatchHealth]] = {}
    for h in health:
        by_cluster.setdefault((h.key.integration_id, h.key.cluster), []).append(h)
    failing: dict[tuple[str, str], bool] = {}
    problems: list[Problem] = []
    for (integration_id, cluster), watches in sorted(by_cluster.items()):
        failing[(integration_id, cluster)] = all(w.state in FAILING for w in watches)
        kinds: dict[str, list[WatchHealth]] = {}
        for w in watches:
            if w.state in FAILING:
                kinds.setdefault(w.state, []).append(w)
        for kind, hit in sorted(kinds.items()):
            if kind == "forbidden":
                what = sorted({f"{w.key.resource} in " + (f"namespace {w.key.namespace}" if w.key.namespace
                                                          else "all namespaces") for w in hit})
                message = "the connector needs get, list and watch on " + "; ".join(what)
            else:
                message = next((w.message for w in hit if w.message), _WORDS[kind])
            problems.append(Problem(integration_id, kind, cluster, message))
    return failing, problems


class Reporter:
    def __init__(
        self,
        *,
        update: Callable[[str, str | None, dict], object],
        emit: Callable[[Outgoing], None],
        last_sync_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
        pool_size: int = 4,
    ) -> None:
        self._update = update
        self._emit = emit
        self._interval = last_sync_interval
        self._clock = clock
        self._puts = Pool(pool_size)
        self._in_flight: set[str] = set()  # integrations with a PUT under way (one at a time each)
        self._last_sync: dict[str, float] = {}
        self._failing_streak: dict[str, int] = {}
        self._seen: dict[tuple, int] = {}  # problem key -> consecutive re-syncs seen
        self._open: dict[tuple, tuple[Problem, int]] = {}  # started (with its hour), not yet resolved

    def stop(self) -> None:
        self._puts.kill(block=True, timeout=2)

    def report(self, *, serving: Iterable[Integration], fetched: Fetched, kept: Mapping[str, tuple[str, ...]],
               health: Iterable[WatchHealth], statuses: Mapping[str, str],
               owns: Callable[[str], bool] | None = None) -> None:
        """`owns`: with several replicas, only an integration's owner reports on it."""
        now = self._clock()
        if owns is not None:
            fetched = replace(fetched, tenants={i: t for i, t in fetched.tenants.items() if owns(i)})
        serving = {i.id: i for i in serving}
        # The header is the served integration's own tenant (never another document's).
        fetched = replace(fetched, tenants={i: serving[i].tenant_id if i in serving else t
                                            for i, t in fetched.tenants.items()})
        failing, problems = cluster_problems(health)
        rejected = {r.integration_id: r.errors for r in fetched.rejected}
        rejected.update(kept)
        for integration_id, errors in rejected.items():
            if integration_id in fetched.tenants and errors:
                problems.append(Problem(integration_id, "config", None, "; ".join(errors)[:1000]))
        self._problem_events(problems, serving, fetched.tenants, now)
        for integration_id, tenant in fetched.tenants.items():
            listed = statuses.get(integration_id, "active")
            if listed == "inactive" or integration_id in self._in_flight:
                continue
            integ = serving.get(integration_id)
            clusters = [failing.get((integration_id, c.name)) for c in integ.clusters] if integ else []
            all_failing = not integ or (bool(clusters) and all(clusters))
            streak = self._failing_streak[integration_id] = self._failing_streak.get(integration_id, 0) + 1 \
                if all_failing else 0
            config_bad = integration_id in rejected and (integ is None or integration_id in kept)
            wanted = "error" if config_bad or streak >= 2 else "active"
            fields: dict[str, str] = {}
            if wanted != listed:  # what the backend says, so a failed PUT is tried again
                fields["status"] = wanted
            if (fields or now - self._last_sync.get(integration_id, float("-inf")) >= self._interval) \
                    and self._puts.free_count():  # never wait for a slot: the next re-sync tries again
                fields["lastSync"] = _iso(now)
                self._in_flight.add(integration_id)
                self._puts.spawn(self._put, integration_id, tenant, fields, now, listed).name = "reporter-put"
        for gone in [i for i in self._last_sync if i not in fetched.tenants]:
            for table in (self._last_sync, self._failing_streak):
                table.pop(gone, None)

    def _put(self, integration_id: str, tenant: str | None, fields: dict, now: float, listed: str) -> None:
        try:
            if self._update(integration_id, tenant, fields) is not False:
                self._last_sync[integration_id] = now
                if "status" in fields:
                    logger.bind(integration=integration_id).info("integration {}: status {} -> {}",
                                                                 integration_id, listed, fields["status"])
        finally:
            self._in_flight.discard(integration_id)

    def _problem_events(self, problems: list[Problem], serving: Mapping[str, Integration],
                        tenants: Mapping[str, str | None], now: float) -> None:
        current = {p.key: p for p in problems}
        self._seen = {k: self._seen.get(k, 0) + 1 for k in current}
        for key, problem in current.items():
            needed = 1 if problem.kind == "config" else 2
            if key not in self._open and self._seen[key] >= needed and key[0] in tenants:
                self._open[key] = (problem, int(now // 3600))
                self._post(problem, tenants, serving, now, hour=int(now // 3600), resolved=False)
        for key in [k for k in self._open if k not in current]:
            problem, hour = self._open.pop(key)
            if key[0] in tenants:
                self._post(problem, tenants, serving, now, hour=hour, resolved=True)

    def _post(self, problem: Problem, tenants, serving, now: float, *, hour: int, resolved: bool) -> None:
        integ = serving.get(problem.integration_id)
        route = Route(integration_id=problem.integration_id, tenant_id=tenants.get(problem.integration_id),
                      cluster=problem.cluster or "", tags=integ.tags if integ else ())
        change, project = problem_event(problem, now=now, hour=hour, resolved=resolved)
        logger.bind(integration=problem.integration_id).info("integration {}: problem {} {}", problem.integration_id,
                                                             change.data["phase"], _what(problem))
        self._emit(to_outgoing(change, route, project=project))


def problem_event(problem: Problem, *, now: float, hour: int, resolved: bool) -> tuple[Change, str | None]:
    """Pure: the change posted when a problem starts or is resolved, and its project when it
    is not "<cluster>:_integration" (a config problem has no cluster: "_integration"). Its
    externalId is the problem's and its start hour's, for both phases."""
    what = _what(problem)
    title = f"Integration problem resolved: {what}" if resolved else f"Integration problem: {what}"
    digest = hashlib.sha256(repr(problem.key).encode()).hexdigest()[:12]
    phase = "resolved" if resolved else "started"
    data = {"problem": problem.kind, "phase": phase,
            "summary": f"{what}: resolved" if resolved else f"{what}: {problem.message}", "reason": problem.message}
    if problem.cluster:
        data["cluster"] = problem.cluster
    change = Change(title=title[:500], timestamp=datetime.fromtimestamp(now, timezone.utc),
                    external_id=f"integration-problem-{digest}-{hour}-{phase}",
                    namespace=INTEGRATION_SCOPE, kind="Integration", reason=f"Problem{phase.title()}", data=data)
    return change, None if problem.cluster else INTEGRATION_SCOPE


def _what(problem: Problem) -> str:
    where = f"cluster {problem.cluster!r}: " if problem.cluster else ""
    return f"{where}{_WORDS[problem.kind]}"


def _iso(epoch: float) -> str:
    when = datetime.fromtimestamp(epoch, timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
