"""Connector: owns every greenlet of one running connector; start / stop / join.

Data flows one way: source (backend or local) -> resync -> WatchPool.adjust -> Reflectors
-> detection -> Outbox -> poster (backend or JSON-lines sink).

Greenlets it owns (all named): `connector:main` (register, then the re-sync loop),
`connector:ready` (sets `ready` once everything has listed), the WatchPool's `watch:*`,
the Outbox's senders, and the health server's. It never patches, installs signal
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
from .orchestration import WatchPool, wanted_watches
from .probing import ProbeSettings
from .schemas.event import to_outgoing
from .settings import Settings
from .sources import BackendSource, FetchFailed, Fetched, LocalSource
from .watching import WatchTiming


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
                          allow_contexts=settings.allow_kubeconfig_contexts)
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
        )
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
            )
            self.health.start()
        self.outbox.start()
        self._main = Greenlet(self._run)
        self._main.name = "connector:main"
        self._main.start()
        self._ready_watch = Greenlet(self._watch_ready)
        self._ready_watch.name = "connector:ready"
        self._ready_watch.start()
        return self

    def stop(self, timeout: float | None = None) -> int:
        """Stop watches, drain delivery for a bounded time. Returns the events lost."""
        timeout = self.settings.drain_timeout if timeout is None else timeout
        for greenlet in (self._main, self._ready_watch):
            if greenlet is not None:
                greenlet.kill(block=True, timeout=5)
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

        return readiness_report(
            registered=self.registered,
            local_mode=self.settings.local_mode,
            integrations_fetched=self.integrations_fetched,
            watches=self.pool.states(),
        )

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
        while True:
            try:
                self.resync_once()
            except Exception as exc:  # noqa: BLE001 - a bug here must not end the re-sync loop
                logger.opt(exception=exc).error("re-sync crashed ({}); the watches keep running, next try in {}s",
                                                 type(exc).__name__, self.settings.resync_interval)
            gevent.sleep(self.settings.resync_interval)

    def resync_once(self, *, clock: Callable[[], float] = time.monotonic) -> dict[str, int] | None:
        started = clock()
        try:
            fetched = self.source.fetch()
        except FetchFailed as exc:
            logger.error("re-sync failed, keeping {} watches running: {}", len(self.pool.running), exc)
            self.metrics.resync_duration.labels("failed").observe(clock() - started)
            return None
        self._log_rejects(fetched)
        counts = self.pool.adjust(wanted_watches(fetched.integrations))
        if self.backend is not None:
            self.outbox.retain_integrations({i.id for i in fetched.integrations})
        self.integrations_fetched = True
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
