"""Connector: owns every greenlet of one running connector; start / stop / join.

Data flows one way: source (backend or local) -> resync -> WatchPool.adjust -> Reflectors
-> detection -> Outbox -> poster (backend or JSON-lines sink).

Greenlets it owns (all named): `connector:main` (register, then the re-sync loop),
`connector:ready` (sets `ready` once everything has listed), the WatchPool's `watch:*`,
the Outbox's senders, the health server's, and with SHARD_LEASE_NAMESPACE `sharding:leases`
(its Lease; the re-sync then keeps only this replica's share). It never patches, installs signal
handlers or adds log sinks: the CLI (or the embedding host) does that.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import gevent
from gevent import Greenlet
from gevent.event import Event
from ._log import logger

from .clusters import ReadLimits
from .metrics import Metrics
from .model import Change, Route
from .logs import retain_secrets
from .orchestration import WatchPool, wanted_watches
from .probing import ProbeSettings
from .reporting import Reporter
from .selection import LastKnownGood, ShrinkGuard
from .schemas.event import to_outgoing
from .settings import Settings
from .sharding import build_sharding
from .sources import BackendSource, FetchFailed, Fetched, LocalSource
from .watching import WatchTiming


READY_GRACE = 120.0  # seconds after the first fetch; see readiness()


class Connector:
    def __init__(self, settings: Settings, *, source=None, poster=None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics(per_integration=settings.metrics_per_integration)
        self.backend = None
        self.spool = None
        if source is None and not settings.local_mode:
            from .backend import BackendClient

            self.backend = BackendClient(
                base_url=settings.backend_url,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.post_timeout,
                pool_size=settings.senders + 2,
            )
        self.source = source or (
            BackendSource(self.backend, allow_in_cluster=settings.allow_in_cluster,
                          allow_contexts=settings.allow_kubeconfig_contexts, limits=settings.limits)
            if self.backend else LocalSource(config_file=settings.config_file)
        )
        from .delivering import Outbox

        if poster is None:
            poster = self.backend.post_event if self.backend else self._local_sink().post
        if settings.state_dir is not None:
            from .delivering.spool import Spool

            settings.state_dir.mkdir(parents=True, exist_ok=True)
            self.spool = Spool(settings.state_dir / "painchain-connector.sqlite3")
        self.outbox = Outbox(poster=poster, settings=settings, metrics=self.metrics, spool=self.spool)
        self.pool = WatchPool(
            make_emit=self._make_emit,
            timing=WatchTiming(
                watch_timeout=settings.watch_timeout,
                stall_margin=settings.stall_margin,
                page_size=settings.list_page_size,
                forbidden_retry=settings.resync_interval,
                event_repeat_window=settings.event_repeat_window,
                rollout_window=settings.rollout_window,
            ),
            metrics=self.metrics,
            connect_timeout=settings.connect_timeout,
            limits=ReadLimits(
                max_list_page_bytes=settings.max_list_page_bytes,
                max_watch_line_bytes=settings.max_watch_line_bytes,
                max_list_objects=settings.max_list_objects,
                max_list_pages=settings.max_list_pages,
            ),
            probe=ProbeSettings(interval=settings.stall_probe_interval, rate=settings.stall_probe_rate)
            if settings.stall_probe_interval else None,
            state_store=self.spool,
            checkpoint=self.outbox.checkpoint,
            flush_interval=settings.state_flush_interval,
            egress=settings.egress,
            state_retention=settings.state_retention,
            parked_per_tenant=settings.max_watches_per_tenant,
        )
        # backend -> select (last known good) -> guard (suspicious shrink) -> reconcile;
        # report (status, lastSync, problems) -> backend
        self.last_good = LastKnownGood(limits=settings.limits)
        self.guard = ShrinkGuard(confirmations=settings.shrink_confirmations)
        self.reporter = (
            Reporter(update=self.backend.update_integration, emit=self.outbox.put,
                     last_sync_interval=settings.last_sync_interval)
            if self.backend is not None else None
        )
        # None unless SHARD_LEASE_NAMESPACE: then this replica watches only its share.
        self.sharding = build_sharding(settings, metrics=self.metrics)
        self.ready = Event()
        self.registered = settings.local_mode or source is not None
        self.integrations_fetched = False
        self.fatal_error: str | None = None
        self.health = None
        self._main: Greenlet | None = None
        self._ready_watch: Greenlet | None = None
        self._stopped = Event()
        # Set when the main loop ends by itself (a fatal error such as a refused registration).
        self.failed = Event()
        self.last_fetch: Fetched | None = None
        self.serving: tuple = ()  # the integrations the guard let through at the last re-sync
        self._first_fetch: float | None = None
        self._reported_rejects: dict[str, tuple[str, ...]] = {}

    def _local_sink(self):
        from .delivering.sinks import JsonLinesSink

        return JsonLinesSink(self.settings.sink if self.settings.sink else sys.stdout)

    # -- public API ---------------------------------------------------------------------

    def start(self) -> "Connector":
        """Start every greenlet in the current hub and return at once."""
        if self.settings.health_port:
            from .health import HealthServer

            self.health = HealthServer(
                host=self.settings.health_host, port=self.settings.health_port,
                metrics=self.metrics, readiness=self.readiness,
                status=self.status, status_public=self.settings.status_public,
            )
            self.health.start()
        self.outbox.start()
        if self.sharding is not None:
            self.sharding.start()
        self._main = Greenlet(self._run)
        self._main.name = "connector:main"
        self._main.start()
        self._ready_watch = Greenlet(self._watch_ready)
        self._ready_watch.name = "connector:ready"
        self._ready_watch.start()
        return self

    def stop(self, timeout: float | None = None, *, hand_over: bool = True) -> int:
        """Stop watches, drain delivery for a bounded time. Returns the events lost.
        Sharded: first give up the Lease and keep watching for the hand-over time."""
        timeout = self.settings.drain_timeout if timeout is None else timeout
        for greenlet in (self._main, self._ready_watch):
            if greenlet is not None:
                greenlet.kill(block=True, timeout=5)
        if self.reporter is not None:
            self.reporter.stop()
        if self.sharding is not None:
            self.sharding.stop(hand_over=hand_over)
        try:
            self.pool.stop_all()
        finally:
            try:
                lost = self.outbox.stop(timeout)
            finally:
                if self.health is not None:
                    self.health.stop()
                if self.spool is not None:
                    self.spool.close()
                self._stopped.set()
        logger.info("connector stopped ({} events not delivered)", lost)
        return lost

    def join(self, timeout: float | None = None) -> bool:
        """Wait until stopped (or a fatal error ended the main loop)."""
        waiters = [self._stopped]
        if self._main is not None:
            waiters.append(self._main)
        gevent.wait(waiters, timeout=timeout, count=1)
        return self._stopped.is_set() or (self._main is not None and self._main.dead)

    # -- readiness ----------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict]:
        from .health import readiness_report

        health = self.pool.health()
        return readiness_report(
            registered=self.registered,
            local_mode=self.settings.local_mode,
            integrations_fetched=self.integrations_fetched,
            watches={h.key: h.state for h in health},
            tried=[h.key for h in health if h.message],
            running=self._main is not None and not self._main.dead and self.outbox.running,
            # A tenant's apiserver that trickles its list must not keep a new pod out of
            # service: after READY_GRACE, a watch still on its first list no longer counts.
            was_ready=self.ready.is_set() or (self._first_fetch is not None
                                              and time.monotonic() - self._first_fetch > READY_GRACE),
        )

    def status(self) -> dict:
        """Every integration's clusters and watch states with their last error (operator only)."""
        found: dict[str, dict] = {}
        for h in sorted(self.pool.health(), key=lambda h: h.key):
            cluster = found.setdefault(h.key.integration_id, {}).setdefault(h.key.cluster, {})
            cluster[f"{h.key.resource}/{h.key.namespace or '*'}"] = (
                {"state": h.state, "error": h.message} if h.message else {"state": h.state})
        return {"integrations": found}

    def _watch_ready(self) -> None:
        while not self.readiness()[0]:
            gevent.sleep(0.5)
        self.ready.set()
        logger.info("ready: {} watches listed", len(self.pool.running))

    # -- the main loop --------------------------------------------------------------------

    def _run(self) -> None:
        if not self.registered:
            from .backend import RegistrationFailed
            from .metadata import METADATA

            try:
                self.backend.register(METADATA)
            except RegistrationFailed as exc:
                self.fatal_error = f"could not register the connector type with the backend: {exc}"
                logger.critical(self.fatal_error)
                self.failed.set()
                return
            self.registered = True
            logger.info("registered connector type 'kubernetes' with {}", self.settings.backend_url)
        if self.sharding is not None:
            self.sharding.wait_first_view()
        while True:
            try:
                self.resync_once()
            except Exception as exc:  # noqa: BLE001 - a bug here must not end the re-sync loop
                logger.opt(exception=exc).error("re-sync crashed ({}); the watches keep running, next try in {}s",
                                                 type(exc).__name__, self.settings.resync_interval)
            if self.sharding is None:
                gevent.sleep(self.settings.resync_interval)
            else:  # wakes early to re-share when members change or a hand-over ends
                self.sharding.pause(self.settings.resync_interval, reshard=self._reshard)

    def _adjust(self, integrations) -> dict[str, int]:
        if self.sharding is None:
            return self.pool.adjust(wanted_watches(integrations))
        return self.sharding.adjust(self.pool, integrations, wanted_watches=wanted_watches)

    def _reshard(self) -> None:
        counts = self._adjust(self.serving)
        if changed := {k: v for k, v in counts.items() if v and k != "unchanged"}:
            logger.info("re-share: watches {}", changed)

    def resync_once(self, *, clock: Callable[[], float] = time.monotonic) -> dict[str, int] | None:
        started = clock()
        try:
            fetched = self.source.fetch()
        except FetchFailed as exc:
            logger.error("re-sync failed, keeping {} watches running: {}", len(self.pool.running), exc)
            self.metrics.resync_duration.labels("failed").observe(clock() - started)
            return None
        fetched = self.last_good.apply(fetched)
        verdict = self.guard.review(fetched)
        self._log_rejects(fetched)
        self.serving = verdict.integrations
        counts = self._adjust(verdict.integrations)
        retain_secrets(verdict.present)
        if self.backend is not None:
            # Only integrations gone from the list lose their queued events: an inactive or
            # invalid one still exists, and its events are still the tenant's.
            self.outbox.retain_integrations(verdict.present)
        if self.reporter is not None:
            self.reporter.report(serving=verdict.integrations, fetched=fetched, kept=self.last_good.kept,
                                 health=self.pool.health(), statuses=fetched.statuses,
                                 owns=self.sharding.owns if self.sharding is not None else None)
        self.integrations_fetched = True
        if self._first_fetch is None:
            self._first_fetch = time.monotonic()
        self.last_fetch = fetched
        self.metrics.resync_duration.labels("ok").observe(clock() - started)
        changed = {k: v for k, v in counts.items() if v and k != "unchanged"}
        if changed:
            logger.info("re-sync: {} integrations; watches {}", len(fetched.integrations), changed)
        return counts

    def _log_rejects(self, fetched: Fetched) -> None:
        gauge = self.metrics.integrations
        invalid = sum(1 for r in fetched.rejected if r.integration is None)
        gauge.labels("valid").set(len(fetched.integrations) - fetched.partial)
        gauge.labels("partial").set(fetched.partial)
        gauge.labels("invalid").set(invalid)
        gauge.labels("inactive").set(fetched.inactive)
        reported = {}
        for result in fetched.rejected:
            reported[result.integration_id] = result.errors
            if self._reported_rejects.get(result.integration_id) == result.errors:
                continue  # said at the last re-sync already; metrics keep counting it
            what = "rejected" if result.integration is None else "partly rejected"
            if result.integration_id in self.last_good.kept:
                what = "rejected (its last valid config keeps running)"
            for reason in result.errors:
                logger.bind(integration=result.integration_id).error(
                    "integration {} {}: {}", result.integration_id, what, reason
                )
        self._reported_rejects = reported

    def _make_emit(self, route: Route):
        outbox, emitted = self.outbox, self.metrics.events_emitted
        per_integration = self.metrics.integration_events

        def emit(changes: list[Change]) -> None:
            for change in changes:
                emitted.labels(change.kind, change.reason).inc()
                outbox.put(to_outgoing(change, route))
            if per_integration is not None:
                per_integration.labels(route.integration_id).inc(len(changes))

        return emit
