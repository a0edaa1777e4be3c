"""WatchKey -> greenlet. `adjust()` compares wanted watches with running ones.

Like kopf's `adjust_tasks`: stop the redundant first, restart those whose fingerprint
changed (a rotated token, new tags: the Store is handed over, so the restart relists and
diffs instead of re-baselining and nothing in between is missed), start the missing,
leave the unchanged alone. Every watch greenlet is owned by the pool (a dict keyed by
WatchKey, never a size-limited pool: watches never end), is named after its key, and
runs through a guard that logs a crash or a return (a bug) and restarts it with backoff.
Clients are shared per credential set and closed when their last watch stops.
"""
from __future__ import annotations

import hashlib
import pickle
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import gevent
from gevent.pool import Group
from gevent import Greenlet
from ._log import logger

from .clusters import ApiError, ListerWatcher, build_api_client, check_connection
from .correlating import WORKLOAD_RESOURCES, Correlations
from .metrics import Metrics
from .model import ALL_NAMESPACES, Route, WatchKey
from .resources import RESOURCE_TYPES
from .schemas.integration import Cluster, Integration
from .watching import Backoff, Emit, Reflector, Store, WatchTiming


@dataclass(frozen=True)
class WatchSpec:
    key: WatchKey
    cluster: Cluster
    route: Route
    fingerprint: str  # everything that, when changed, requires a restart


def wanted_watches(integrations: Iterable[Integration]) -> dict[WatchKey, WatchSpec]:
    """Every (integration, cluster, resource, namespace) that should be watched."""
    wanted: dict[WatchKey, WatchSpec] = {}
    for integ in integrations:
        if not integ.active:
            continue
        namespaces = integ.namespaces or (ALL_NAMESPACES,)
        for cluster in integ.clusters:
            route = Route(integration_id=integ.id, tenant_id=integ.tenant_id, cluster=cluster.name, tags=integ.tags)
            digest = hashlib.sha256(repr((cluster.credential_fingerprint, route)).encode()).hexdigest()[:16]
            for resource in integ.resources.enabled():
                for namespace in namespaces:
                    key = WatchKey(integ.id, cluster.name, resource, namespace)
                    wanted[key] = WatchSpec(key=key, cluster=cluster, route=route, fingerprint=digest)
    return wanted


@dataclass
class _Running:
    spec: WatchSpec
    reflector: Reflector
    greenlet: Greenlet
    saved_revision: int = -1


def state_key(spec: WatchSpec) -> str:
    """Persisted-state key: the WatchKey plus which API server it is (a renamed server
    must not be diffed against another cluster's objects)."""
    where = spec.cluster.server or spec.cluster.context or "in-cluster"
    return f"{spec.key}@{where}"


class ClientCache:
    """One ApiClient per credential set, reference-counted by the watches using it."""

    def __init__(self, *, connect_timeout: float, spawn_check: Callable[..., object], egress=None) -> None:
        self.connect_timeout = connect_timeout
        self.egress = egress
        self._clients: dict[str, list] = {}  # fingerprint -> [api, refcount]
        self._warned_insecure: set[str] = set()
        self._spawn_check = spawn_check

    def acquire(self, cluster: Cluster, *, label: str):
        fp = cluster.credential_fingerprint
        entry = self._clients.get(fp)
        if entry is None:
            api = build_api_client(cluster, connect_timeout=self.connect_timeout, egress=self.egress)
            if cluster.skip_tls_verify and fp not in self._warned_insecure:
                self._warned_insecure.add(fp)
                logger.warning("{}: skipTLSVerify is on: the API server's identity is NOT verified", label)
            entry = self._clients[fp] = [api, 0]
            self._spawn_check(self._check, api, label)
        entry[1] += 1
        return entry[0]

    def release(self, cluster: Cluster) -> None:
        fp = cluster.credential_fingerprint
        entry = self._clients.get(fp)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._clients[fp]
            entry[0].close()

    def _check(self, api, label: str) -> None:
        try:
            version = check_connection(api, cluster_label=label, connect_timeout=self.connect_timeout)
            logger.info("{}: connection test passed (Kubernetes {})", label, version)
        except ApiError as exc:
            logger.error("{}: connection test failed: {}", label, exc)

    def __len__(self) -> int:
        return len(self._clients)


class WatchPool:
    """Owns every watch greenlet; `adjust(wanted)` is the only way to change the set."""

    def __init__(
        self,
        *,
        make_emit: Callable[[Route], Emit],
        timing: WatchTiming,
        metrics: Metrics,
        connect_timeout: float,
        state_store=None,
        checkpoint: Callable[[], object] | None = None,
        flush_interval: float = 30.0,
        sleep: Callable[[float], None] = gevent.sleep,
        egress=None,
        state_retention: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.make_emit = make_emit
        self.timing = timing
        self.metrics = metrics
        self.sleep = sleep
        self.clock = clock
        self.clients = ClientCache(connect_timeout=connect_timeout, spawn_check=self._spawn_check, egress=egress)
        # The Stores of stopped watches, kept for `state_retention` seconds: an integration
        # that comes back (re-activated, a typo fixed) relists and diffs instead of
        # re-baselining, so what changed while it was stopped is still reported.
        self.state_retention = state_retention
        self.parked: dict[str, tuple[Store, float]] = {}  # state_key -> (store, stopped at)
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
                if state_key(current.spec) == state_key(spec):  # same API server: keep what we know
                    handover = (current.reflector.store, current.reflector.resource_version)
                self._stop(key)
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
        """Stop a watch that is no longer wanted, keeping its Store for the retention period."""
        running = self.running[key]
        self._stop(key)
        if running.greenlet.dead and running.reflector.resource_version is not None:
            self.parked[state_key(running.spec)] = (running.reflector.store, self.clock())
            self._save_one(running)

    def _forget_expired(self) -> None:
        cutoff = self.clock() - self.state_retention
        for where in [k for k, (_, stopped_at) in self.parked.items() if stopped_at <= cutoff]:
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
            blob = pickle.dumps(running.reflector.store.objects, protocol=pickle.HIGHEST_PROTOCOL)
            self.state_store.save_watch_state(state_key(running.spec), running.reflector.resource_version, blob)
        except Exception as exc:  # noqa: BLE001 - a disk error loses the diff on return, not the watch
            logger.bind(**running.spec.key.log_context()).error("could not save a stopped watch's state: {}",
                                                                 type(exc).__name__)

    def _start(self, spec: WatchSpec, *, handover) -> bool:
        key = spec.key
        label = f"integration {key.integration_id} cluster {key.cluster!r}"
        try:
            api = self.clients.acquire(spec.cluster, label=label)
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
        correlation = self.correlations.acquire(key, api=api, connect_timeout=self.clients.connect_timeout)
        emit = self.make_emit(spec.route)
        reflector = Reflector(
            key=key,
            lister_watcher=ListerWatcher(
                api, path=RESOURCE_TYPES[key.resource].path(key.namespace), connect_timeout=self.clients.connect_timeout
            ),
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
        if self.state_store is None:
            return None, None
        try:
            found = self.state_store.load_watch_state(state_key(spec))
            if found is None:
                return None, None
            return Store(pickle.loads(found[1])), None  # rv None: relist and diff
        except Exception as exc:  # noqa: BLE001 - a corrupt state must not stop the watch
            logger.bind(**spec.key.log_context()).warning(
                "persisted watch state unusable ({}): starting from a baseline", type(exc).__name__)
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
            blob = pickle.dumps(reflector.store.objects, protocol=pickle.HIGHEST_PROTOCOL)
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

    def _stop(self, key: WatchKey, *, block: bool = True) -> None:
        running = self.running.pop(key)
        running.greenlet.kill(block=block, timeout=5)
        if not running.greenlet.dead:
            logger.bind(**key.log_context()).error("watch {} did not stop within 5 s", key)
        running.reflector.close()
        self.correlations.release(key)
        self.clients.release(running.spec.cluster)

    def stop_all(self) -> None:
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
