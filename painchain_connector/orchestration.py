"""WatchKey -> greenlet. `adjust()` compares wanted watches with running ones, like kopf's
`adjust_tasks`: stop the redundant first, restart those whose fingerprint changed (a rotated token,
new tags: the Store is handed over, so the restart relists and diffs instead of re-baselining and
nothing in between is missed), start the missing, leave the unchanged alone. Every watch greenlet is
owned by the pool (a dict keyed by WatchKey, never a size-limited pool: watches never end), is named
after its key, and runs through a guard that logs a crash or a return (a bug) and restarts it with
backoff. Clients are shared per credential set and closed when their last watch stops. Two more
greenlets, both stopped by `stop_all()`: "watch-state:flush" (with a state store) and
"watch-stall-probe" (probing.StallProbe, unless the probe is off).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import gevent
from gevent.pool import Group
from gevent import Greenlet
from ._log import logger

from . import persisting
from .clients import ClientCache
from .clusters import ApiError, ListerWatcher, ReadLimits
from .filtering import ClusterNotesBook, FilterBook, Filters, Gate, exists_checker
from .correlating import WORKLOAD_RESOURCES, Correlations
from .metrics import Metrics
from .model import ALL_NAMESPACES, Route, WatchKey
from .probing import ProbeSettings, StallProbe
from .resources import RESOURCE_TYPES
from .schemas.integration import Cluster, Integration
from .backoff import Backoff
from .watching import Emit, Reflector, Store, WatchTiming


@dataclass(frozen=True)
class WatchSpec:
    key: WatchKey
    cluster: Cluster
    route: Route
    fingerprint: str  # everything that, when changed, requires a restart
    filters: Filters = Filters()  # applied live: a change restarts nothing
    label_selector: str = ""  # sent with list and watch: part of the fingerprint


def wanted_watches(integrations: Iterable[Integration]) -> dict[WatchKey, WatchSpec]:
    """Every (integration, cluster, resource, namespace) that should be watched.
    Excluded namespaces of a namespace list are not watched; a label selector goes to
    every watch but the Events one (Events carry no labels of their object)."""
    wanted: dict[WatchKey, WatchSpec] = {}
    for integ in integrations:
        if not integ.active:
            continue
        filters = Filters(integ.exclude_namespaces, integ.label_selector)
        namespaces = tuple(n for n in integ.namespaces if not filters.excludes(n)) or (
            () if integ.namespaces else (ALL_NAMESPACES,))
        for cluster in integ.clusters:
            route = Route(integration_id=integ.id, tenant_id=integ.tenant_id, cluster=cluster.name, tags=integ.tags)
            digest = hashlib.sha256(repr((cluster.credential_fingerprint, route)).encode()).hexdigest()[:16]
            for resource in integ.resources.enabled():
                selector = integ.label_selector if resource != "events" else ""
                fingerprint = f"{digest}:{hashlib.sha256(selector.encode()).hexdigest()[:16]}" if selector else digest
                for namespace in namespaces:
                    key = WatchKey(integ.id, cluster.name, resource, namespace)
                    wanted[key] = WatchSpec(key=key, cluster=cluster, route=route, fingerprint=fingerprint,
                                            filters=filters, label_selector=selector)
    return wanted


@dataclass
class _Running:
    spec: WatchSpec
    reflector: Reflector
    greenlet: Greenlet
    saved_revision: int = -1


def _handover(reflector: Reflector, *, stopped: bool) -> tuple[Store, str | None]:
    """What a restarted watch inherits: the Store and resourceVersion of the stopped one.
    Taken after the kill, so nothing is written between; if the old greenlet outlived its
    kill, the new one gets a copy, so two reflectors never write one Store (issue 13
    point 5). Compacts are immutable: a shallow copy is a full one, made without a switch."""
    store = reflector.store if stopped else Store(dict(reflector.store.objects))
    return store, reflector.resource_version


def state_key(spec: WatchSpec) -> str:
    """Persisted-state key: the WatchKey plus which API server it is (a renamed server
    must not be diffed against another cluster's objects)."""
    where = spec.cluster.server or spec.cluster.context or "in-cluster"
    # Another label selector sees other objects: its Store must not be diffed against this
    # one's (those that left or entered the selection would be reported deleted or created).
    selected = f"?{hashlib.sha256(spec.label_selector.encode()).hexdigest()[:16]}" if spec.label_selector else ""
    return f"{spec.key}@{where}{selected}"


class WatchPool:
    """Owns every watch greenlet; `adjust(wanted)` is the only way to change the set."""

    def __init__(
        self,
        *,
        make_emit: Callable[[Route], Emit],
        timing: WatchTiming,
        metrics: Metrics,
        connect_timeout: float,
        limits: ReadLimits = ReadLimits(),
        state_store=None,
        checkpoint: Callable[[], object] | None = None,
        flush_interval: float = 30.0,
        sleep: Callable[[float], None] = gevent.sleep,
        egress=None,
        state_retention: float = 3600.0,
        parked_per_tenant: int = 2000,
        clock: Callable[[], float] = time.monotonic,
        stop_timeout: float = 5.0,
        probe: ProbeSettings | None = ProbeSettings(),
        watch_namespaces: bool = True,
    ) -> None:
        self.make_emit = make_emit
        self.stop_timeout = stop_timeout
        self.timing = timing
        self.metrics = metrics
        self.sleep = sleep
        self.limits = limits
        self.clock = clock
        self.clients = ClientCache(connect_timeout=connect_timeout, spawn_check=self._spawn_check, egress=egress)
        self.filters = FilterBook()  # exclusions, read live by every watch's Gate
        self.notes = ClusterNotesBook(connect_timeout=connect_timeout, watch_namespaces=watch_namespaces,
                                      limits=limits)
        # The Stores of stopped watches, kept for `state_retention` seconds: an integration
        # that comes back (re-activated, a typo fixed) relists and diffs instead of
        # re-baselining, so what changed while it was stopped is still reported.
        self.state_retention = state_retention
        self.parked: dict[str, tuple[Store, float, str | None]] = {}  # state_key -> (store, stopped at, tenant)
        self.parked_per_tenant = parked_per_tenant
        self.running: dict[WatchKey, _Running] = {}
        self.failed: dict[WatchKey, str] = {}  # keys that could not even start (bad credentials)
        self._checks = Group()
        # Owner index watches (ReplicaSets, Jobs) beside each pods watch, and recent rollouts.
        self.correlations = Correlations(
            make_reflector=lambda cls, **kw: cls(emit=lambda _: None, timing=timing, metrics=metrics, sleep=sleep, **kw),
            run=self._guarded, spawn=self._spawn_named)
        # With STATE_DIR: per-key Store + resourceVersion survive a restart, so the first
        # list after it is a diff (changes made while down are emitted), not a baseline.
        self.state_store = state_store
        self.checkpoint = checkpoint  # makes emitted events durable before Stores are saved
        self.flush_interval = flush_interval
        self._flusher: Greenlet | None = None
        if state_store is not None:
            self._flusher = Greenlet(self._flush_forever)
            self._flusher.name = "watch-state:flush"
            self._flusher.start()
        # One stall probe for the whole pool (per-cluster targets, a global rate): None = off.
        self.prober = StallProbe(settings=probe, clusters=self.watches_by_cluster, metrics=metrics) if probe else None
        self._probing: Greenlet | None = None
        if self.prober is not None:
            self._probing = Greenlet(self.prober.run)
            self._probing.name = "watch-stall-probe"
            self._probing.start()

    def watches_by_cluster(self) -> dict[str, list[Reflector]]:
        """The running reflectors grouped by the client (credential set) they share."""
        grouped: dict[str, list[Reflector]] = {}
        for running in self.running.values():
            grouped.setdefault(running.spec.cluster.credential_fingerprint, []).append(running.reflector)
        return grouped

    @staticmethod
    def _spawn_named(fn, arg, name: str) -> Greenlet:
        greenlet = Greenlet(fn, arg)
        greenlet.name = name
        greenlet.start()
        return greenlet

    def _spawn_check(self, fn, *args) -> None:
        self._checks.spawn(fn, *args)

    def adjust(self, wanted: dict[WatchKey, WatchSpec], *, drop_state: frozenset[str] | set[str] = frozenset()
               ) -> dict[str, int]:
        """A stopped watch keeps its state for `state_retention` (an integration that comes
        back relists and diffs), except those of `drop_state`: integrations handed over to
        another live replica, which reports them from now on."""
        counts = {"stopped": 0, "restarted": 0, "started": 0, "unchanged": 0, "failed": 0}
        self.filters.update({spec.key.integration_id: spec.filters for spec in wanted.values()})
        for key in [k for k in self.running if k not in wanted]:
            if key.integration_id in drop_state:
                spec = self.running[key].spec
                self._stop(key)
                self.parked.pop(state_key(spec), None)
                if self.state_store is not None:
                    self.state_store.delete_watch_state(state_key(spec))
            else:
                self._park(key)
            counts["stopped"] += 1
        self._forget_expired()
        self.failed = {k: v for k, v in self.failed.items() if k in wanted}
        for key, spec in wanted.items():
            current = self.running.get(key)
            if current is not None and current.spec.fingerprint == spec.fingerprint:
                counts["unchanged"] += 1
                continue
            handover = None
            if current is not None:
                stopped = self._stop(key)
                if state_key(current.spec) == state_key(spec):  # same API server: keep what we know
                    handover = _handover(current.reflector, stopped=stopped)
            try:
                started = self._start(spec, handover=handover)
            except Exception as exc:  # noqa: BLE001 - one integration's failure must not stop the others
                started = False
                message = f"cannot start the watch: {type(exc).__name__}: {exc}"
                if self.failed.get(key) != message:
                    logger.bind(**key.log_context()).opt(exception=exc).error(
                        "integration {} cluster {!r}: {}", key.integration_id, key.cluster, message)
                self.failed[key] = message
            if started:
                counts["restarted" if current is not None else "started"] += 1
            else:
                counts["failed"] += 1
        return counts

    def _park(self, key: WatchKey) -> None:
        """Stop a watch that is no longer wanted, keeping its Store for the retention period
        (at most `parked_per_tenant` of one tenant: the oldest go first)."""
        running = self.running[key]
        if self._stop(key) and running.reflector.resource_version is not None:
            tenant = running.spec.route.tenant_id
            self.parked[state_key(running.spec)] = (running.reflector.store, self.clock(), tenant)
            self._save_one(running)
            mine = [k for k, (_, _, t) in self.parked.items() if t == tenant]
            for where in mine[:max(0, len(mine) - self.parked_per_tenant)]:  # dicts keep insertion order
                del self.parked[where]

    def _forget_expired(self) -> None:
        cutoff = self.clock() - self.state_retention
        for where in [k for k, (_, stopped_at, _) in self.parked.items() if stopped_at <= cutoff]:
            del self.parked[where]
        if self.state_store is not None:  # also what a previous run left for integrations gone since
            keep = {state_key(r.spec) for r in self.running.values()} | set(self.parked)
            try:
                self.state_store.delete_watch_states_before(time.time() - self.state_retention, keep=keep)
            except Exception as exc:  # noqa: BLE001 - housekeeping; the next re-sync retries
                logger.error("could not drop expired watch states: {}", type(exc).__name__)

    def _save_one(self, running: "_Running") -> None:
        if self.state_store is None or running.reflector.revision == running.saved_revision:
            return
        try:
            if self.checkpoint is not None:
                self.checkpoint()
            blob = persisting.encode(running.reflector.store.objects)
            self.state_store.save_watch_state(state_key(running.spec), running.reflector.resource_version, blob)
        except Exception as exc:  # noqa: BLE001 - a disk error loses the diff on return, not the watch
            logger.bind(**running.spec.key.log_context()).error("could not save a stopped watch's state: {}",
                                                                 type(exc).__name__)

    def _start(self, spec: WatchSpec, *, handover) -> bool:
        key = spec.key
        label = f"integration {key.integration_id} cluster {key.cluster!r}"
        try:
            api = self.clients.acquire(spec.cluster, label=label, integration_id=key.integration_id)
        except ApiError as exc:
            if self.failed.get(key) != str(exc):
                logger.bind(**key.log_context()).error("{}: cannot build a client: {}", label, exc)
            self.failed[key] = str(exc)
            return False
        self.failed.pop(key, None)
        parked = self.parked.pop(state_key(spec), None)
        if handover is None and parked is not None:
            handover = (parked[0], None)  # rv None: relist and diff against what it knew
        store, rv = handover if handover else self._load_state(spec)
        gate = Gate(integration_id=key.integration_id, resource=key.resource, filters=self.filters,
                    notes=self.notes.acquire(spec.cluster, api),
                    still_exists=exists_checker(api, resource=key.resource, connect_timeout=self.clients.connect_timeout)
                    if spec.label_selector else None,
                    counted=lambda reason, n: self.metrics.changes_filtered.labels(reason).inc(n))
        correlation = self.correlations.acquire(key, api=api, connect_timeout=self.clients.connect_timeout,
                                                limits=self.limits)
        emit = self.make_emit(spec.route)
        reflector = Reflector(
            key=key,
            lister_watcher=ListerWatcher(
                api, path=RESOURCE_TYPES[key.resource].path(key.namespace),
                connect_timeout=self.clients.connect_timeout, limits=self.limits,
                label_selector=spec.label_selector,
            ),
            project=gate.project,
            detect=gate.detect,
            emit=correlation.recording(emit) if key.resource in WORKLOAD_RESOURCES else emit,
            timing=self.timing,
            metrics=self.metrics,
            store=store,
            resource_version=rv,
            sleep=self.sleep,
        )
        reflector.correlation = correlation
        greenlet = Greenlet(self._guarded, reflector)
        greenlet.name = f"watch:{key}"
        self.running[key] = _Running(spec, reflector, greenlet)
        greenlet.start()
        return True

    def _load_state(self, spec: WatchSpec):
        """(Store, resourceVersion) saved by an earlier run: the watch resumes from that
        resourceVersion (a 410 relists and diffs), so changes made while the connector was
        down are emitted. (None, None) when there is none or it is unusable."""
        if self.state_store is None:
            return None, None
        try:
            found = self.state_store.load_watch_state(state_key(spec))
            if found is None:
                return None, None
            return Store(persisting.decode(found[1])), found[0] or None
        except Exception as exc:  # noqa: BLE001 - a corrupt state must not stop the watch
            reason = str(exc) if isinstance(exc, persisting.Unusable) else type(exc).__name__
            logger.bind(**spec.key.log_context()).warning(
                "persisted watch state unusable ({}): starting from a baseline", reason)
            return None, None

    def flush_state(self) -> int:
        """Persist every Store that changed since it was last saved. Returns how many."""
        if self.state_store is None:
            return 0
        dirty = [r for r in self.running.values() if r.reflector.revision != r.saved_revision]
        if not dirty:
            return 0
        if self.checkpoint is not None:
            self.checkpoint()  # no greenlet switch until the Stores are saved: sqlite blocks
        saved = 0
        for running in dirty:
            reflector = running.reflector
            if reflector.revision == running.saved_revision or reflector.resource_version is None:
                continue
            revision = reflector.revision
            blob = persisting.encode(reflector.store.objects)
            self.state_store.save_watch_state(state_key(running.spec), reflector.resource_version, blob)
            running.saved_revision = revision
            saved += 1
        return saved

    def _flush_forever(self) -> None:
        while True:
            self.sleep(self.flush_interval)
            try:
                self.flush_state()
            except Exception as exc:  # noqa: BLE001 - keep watching; the next flush retries
                logger.opt(exception=exc).error("saving watch state failed: {}", type(exc).__name__)

    def _guarded(self, reflector: Reflector) -> None:
        """Run a reflector forever; a crash or a return is logged and restarted with backoff."""
        backoff = Backoff()
        log = logger.bind(**reflector.key.log_context())
        while True:
            try:
                reflector.run()
                log.error("watch {} returned: a bug; restarting it", reflector.key)
            except Exception as exc:  # noqa: BLE001 - the guard's whole job
                log.opt(exception=exc).error("watch {} crashed: {}; restarting it", reflector.key, type(exc).__name__)
            reflector.resource_version = None  # relist and diff: nothing between is lost
            self.sleep(backoff.next_delay())

    def _stop(self, key: WatchKey, *, block: bool = True) -> bool:
        """Stop one watch; True once its greenlet is dead."""
        running = self.running.pop(key)
        running.greenlet.kill(block=block, timeout=self.stop_timeout)
        if not running.greenlet.dead:
            logger.bind(**key.log_context()).error("watch {} did not stop within {} s", key, self.stop_timeout)
        running.reflector.close()
        self.notes.release(running.spec.cluster)
        self.correlations.release(key)
        self.clients.release(running.spec.cluster, integration_id=key.integration_id)
        return running.greenlet.dead

    def stop_all(self) -> None:
        if self._probing is not None:
            self._probing.kill(block=True, timeout=5)
            self.prober.stop()
        if self._flusher is not None:
            self._flusher.kill(block=True, timeout=5)
        greenlets = [r.greenlet for r in self.running.values()]
        gevent.killall(greenlets, block=True, timeout=5)
        try:
            self.flush_state()
        except Exception as exc:  # noqa: BLE001 - a disk error must not stop the shutdown itself
            logger.opt(exception=exc).error("could not save the watch state on stop: {}", type(exc).__name__)
        for key in list(self.running):
            self._stop(key, block=False)
        self._checks.kill(block=True, timeout=2)

    def health(self) -> list:
        """Every wanted watch's state and last error (safe to show its tenant)."""
        from .reporting import WatchHealth

        found = [WatchHealth(k, r.reflector.state, r.reflector.last_error) for k, r in self.running.items()]
        found.extend(WatchHealth(k, "invalid", message) for k, message in self.failed.items())
        return found

    def states(self) -> dict[str, str]:
        states = {str(k): r.reflector.state for k, r in self.running.items()}
        states.update({str(k): "invalid" for k in self.failed})
        return states
