"""The Reflector: list, then watch from the list's resourceVersion, forever, for one WatchKey.

Vocabulary and numbers from client-go's tools/cache:
- the initial list fills the Store (a compact projection per object, keyed by uid) and
  emits nothing: pre-existing objects are a baseline, not "created" events;
- the watch resumes from the last resourceVersion seen (bookmarks included) after a
  clean close or a broken stream: no relist, no replay;
- 410 Gone relists and diffs the fresh list against the Store, emitting exactly what
  was missed (deletions of vanished objects included);
- other failures back off 0.8 s doubling to 30 s with full jitter; the backoff resets
  once a watch delivers a change or has been open for 2 minutes, as client-go's does; a
  watch that ends cleanly without progress (no change, open under PROGRESS_AFTER
  seconds: one bookmark and close) backs off too, or it would reconnect in a tight loop;
- a stream silent for longer than its timeout plus a margin is a stall; sooner, the
  stall probe (probing.py) may `interrupt()` a quiet stream it found stalled;
- 401/403, and an answer beyond the read bounds (Oversized: a hostile or broken
  "apiserver"), wait for the next re-sync period and try again (the key stays
  "forbidden", "unauthorized" or "oversized").

The Reflector owns no greenlet: `run()` is the body the WatchPool runs in a named,
guarded greenlet. One iteration (`run_once`) is a function tests can drive.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from ._log import logger

from . import detecting
from .clusters import (
    ApiError, Forbidden, Gone, ListerWatcher, Oversized, Refused, ServerError, Stalled, StreamCut, Unauthorized,
    Unreachable, WatchStream,
)
from .backoff import Backoff
from .metrics import Metrics
from .model import Change, DetectContext, WatchKey
from .objects import SHAPES, Status, WatchEvent

Emit = Callable[[list[Change]], None]


# A watch that ends cleanly sooner than this with no change in it made no progress.
PROGRESS_AFTER = 5.0


@dataclass
class Store:
    """uid -> compact projection; only what detection needs."""

    objects: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.objects)


@dataclass(frozen=True)
class WatchTiming:
    watch_timeout: float = 300.0
    stall_margin: float = 30.0
    page_size: int = 500
    list_read_timeout: float = 60.0
    forbidden_retry: float = 60.0  # = the re-sync interval
    event_repeat_window: float = 300.0
    rollout_window: float = 900.0  # a pod failure this soon after its workload's rollout names it


class Reflector:
    """List+watch of one WatchKey into its Store, detection on every change."""

    def __init__(
        self,
        *,
        key: WatchKey,
        lister_watcher: ListerWatcher,
        emit: Emit,
        timing: WatchTiming,
        metrics: Metrics,
        store: Store | None = None,
        resource_version: str | None = None,
        sleep: Callable[[float], None],
        wallclock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        project: Callable[..., Any] = detecting.project,  # filtering.Gate's, to apply a tenant's filters
        detect: Callable[..., Any] = detecting.detect,
    ) -> None:
        self.key = key
        self.lw = lister_watcher
        if lister_watcher.shape is dict:  # detection reads its resource's typed shape (objects.py)
            lister_watcher.shape = SHAPES.get(key.resource, dict)
        self.emit = emit
        self.timing = timing
        self.metrics = metrics
        # A handed-over or persisted store means the next list is a diff, not a baseline.
        self.store = store if store is not None else Store()
        self._baseline_done = store is not None
        self.resource_version = resource_version if store is not None else None
        self.sleep = sleep
        self.wallclock = wallclock
        self.rng = rng or random.Random()
        self.clock = clock
        self.backoff = Backoff(rng=self.rng.random, clock=clock)
        self.revision = 0  # bumped on every Store change; the pool persists changed stores
        self.state = "starting"
        metrics.watches.labels("starting").inc()
        self.last_error: str | None = None
        self.log = logger.bind(**key.log_context())
        self._project = project
        self._detect = detect
        self._observed: dict[str, Any] = {}
        self._ctx_second = -1
        self._seen = 0  # watch events received (bookmarks included)
        self._changes = 0  # watch changes applied (ADDED, MODIFIED, DELETED)
        self._stream: WatchStream | None = None  # the open watch, for interrupt()
        self._interrupted: str | None = None
        self._applied_since_list = 0
        self._ctx_cached: DetectContext | None = None
        self.correlation = None  # correlating.Correlation of this cluster, read by detection

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Never returns (the WatchPool logs a return as a bug)."""
        while True:
            self.run_once()

    def run_once(self) -> None:
        """One list-if-needed + one watch request, with its failure handling."""
        try:
            if self.resource_version is None:
                self._set_state("listing")
                self.relist()
            self.watch_once()
        except Gone:
            self.metrics.watch_restarts.labels(self.key.resource, "gone").inc()
            self.log.info("resourceVersion {} expired (410 Gone): relisting", self.resource_version)
            self.resource_version = None
            if self._applied_since_list == 0:
                # 410 right after a list (a slow paged list, an odd proxy): back off, or
                # relist -> 410 -> relist would spin at full speed.
                self.sleep(self.backoff.next_delay())
        except (Forbidden, Unauthorized, Oversized, Refused) as exc:
            # Not transient: a config or RBAC problem, an address the egress policy refuses, or
            # a "cluster" answering more than any real one would. Logged once, retried each
            # re-sync period.
            self._fail(exc, level="ERROR", state=exc.reason)
            self.sleep(self.timing.forbidden_retry)
        except Unreachable as exc:
            self._fail(exc, level="WARNING", state="unreachable")
            self.sleep(self.backoff.next_delay())
        except ApiError as exc:
            self._fail(exc, level="WARNING", state="backoff")
            self.sleep(self.backoff.next_delay())

    def _fail(self, exc: ApiError, *, level: str, state: str) -> None:
        self.metrics.watch_restarts.labels(self.key.resource, exc.reason).inc()
        message = str(exc)
        if state == "forbidden":
            message = f"{message} (needs get/list/watch on {self.key.resource} in " + (
                f"namespace {self.key.namespace!r})" if self.key.namespace else "all namespaces)"
            )
        # The same failure again (a dead cluster retried with backoff) goes to DEBUG: one
        # line per watch per outage at the chosen level, not one per retry.
        self.log.log(level if message != self.last_error else "DEBUG", "{} watch {}: {}",
                     self.key.resource, exc.reason, message)
        self.last_error = message
        self._set_state(state)

    def close(self) -> None:
        """The pool stopped this reflector: it no longer counts in the state gauge."""
        self.metrics.watches.labels(self.state).dec()
        self.state = "stopped"

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.metrics.watches.labels(self.state).dec()
            self.metrics.watches.labels(state).inc()
            self.state = state
        if state == "watching":
            self.last_error = None

    # -- list ---------------------------------------------------------------------------

    def relist(self) -> None:
        """Paged list; the first one is a baseline, later ones diff against the Store.

        Only compact projections are kept while paging (a page's raw objects are dropped
        before the next is read), and the list stops at the ListerWatcher's bounds on
        objects and pages (Oversized)."""
        fresh: dict[str, Any] = {}
        continue_token = None
        resource_version = ""
        project, resource = self._project, self.key.resource
        limits = self.lw.limits
        pages = 0
        while True:
            pages += 1
            if pages > limits.max_list_pages:
                raise Oversized(f"a list has more than {limits.max_list_pages} pages (MAX_LIST_PAGES)")
            page = self.lw.list_page(
                limit=self.timing.page_size, continue_token=continue_token,
                read_timeout=self.timing.list_read_timeout,
            )
            seen = self.wallclock().timestamp()  # when this version was observed (detect compares it)
            try:
                for obj in page.items:
                    compact = project(resource, obj, seen)
                    fresh[compact.uid] = compact
            except _UNREADABLE as exc:
                raise _unreadable(resource, exc) from None
            if len(fresh) > limits.max_list_objects:
                raise Oversized(f"a list has more than {limits.max_list_objects} objects (MAX_LIST_OBJECTS)")
            resource_version = page.resource_version
            continue_token = page.continue_token
            del page
            if not continue_token:
                break
        if self._baseline_done:
            self._diff(fresh)
        else:
            self.store.objects = fresh
            self._baseline_done = True
        self.resource_version = resource_version
        self.revision += 1
        self._applied_since_list = 0
        self.log.debug("listed {} objects at resourceVersion {}", len(fresh), resource_version)

    def _diff(self, fresh: dict[str, Any]) -> None:
        old_objects = self.store.objects
        changes: list[Change] = []
        ctx = self._ctx()
        new_objects: dict[str, Any] = {}
        for uid, compact in fresh.items():
            old = old_objects.get(uid)
            if old is not None and old.resource_version == compact.resource_version:
                new_objects[uid] = old  # unchanged: keep the carried bookkeeping
                continue
            found, state = self._detect(self.key.resource, old, compact, deleted=False, ctx=ctx)
            changes.extend(found)
            new_objects[uid] = state
        for uid, old in old_objects.items():
            if uid not in fresh:
                found, _ = self._detect(self.key.resource, old, None, deleted=True, ctx=ctx)
                changes.extend(found)
        self.store.objects = new_objects
        if changes:
            self.emit(changes)

    # -- watch --------------------------------------------------------------------------

    def watch_once(self) -> None:
        """One watch request; returns on a clean close (the caller resumes from the RV)."""
        upper = self.timing.watch_timeout
        timeout = int(upper / 2 + self.rng.random() * upper / 2) or 1  # spread reconnects
        events = self.lw.watch(  # the request is made here: failures raise before "watching"
            resource_version=self.resource_version,
            timeout_seconds=timeout,
            read_timeout=timeout + self.timing.stall_margin,
        )
        self._set_state("watching")
        self.backoff.healthy()
        started, changes = self.clock(), self._changes
        self._stream, self._interrupted = events, None
        try:
            self.handle_events(events)
        except StreamCut:
            if self._interrupted:  # interrupt() closed it: say why
                raise Stalled(self._interrupted) from None
            raise
        finally:
            self._stream = None
            if self._changes != changes:
                self.backoff.progress()  # before a cut's next_delay: the path worked
        if self._changes == changes and self.clock() - started < PROGRESS_AFTER:
            # Ended without progress (a bookmark and close, a proxy cutting watches): not a
            # reason to reconnect at full speed.
            self.sleep(self.backoff.next_delay())

    @property
    def events_seen(self) -> int:
        """Watch events received so far, bookmarks included (the stall probe's "quiet")."""
        return self._seen

    @property
    def changes_applied(self) -> int:
        return self._changes

    def interrupt(self, why: str) -> bool:
        """Close the open watch stream from another greenlet (the stall probe): the watch
        fails with Stalled(why) and resumes from its resourceVersion after the backoff.
        False if no stream is open."""
        stream = self._stream
        if stream is None or self.state != "watching":
            return False
        self._interrupted = why
        stream.abort()
        return True

    def handle_events(self, events: Iterable[WatchEvent]) -> None:
        observed = self._observed  # label tuples made once per kind
        counts = self.metrics.events_observed.counts  # a Tally: no lock per event (bench #1)
        for event in events:
            self._seen += 1
            kind = event.type
            obj = event.object
            if kind == "BOOKMARK":
                if obj is not None and obj.metadata.resource_version:
                    self.resource_version = obj.metadata.resource_version
                continue
            if kind == "ERROR":
                raise _watch_error(obj if isinstance(obj, Status) else Status())
            if obj is None:
                raise ServerError(f"watch {kind} event without an object")
            label = observed.get(kind)
            if label is None:
                label = observed[kind] = (self.key.resource, kind)
            counts[label] = counts.get(label, 0) + 1
            self.apply(kind, obj)

    def apply(self, kind: str, obj: Any) -> None:
        try:  # free when nothing is raised: no wrapper call per event
            compact = self._project(self.key.resource, obj, self.wallclock().timestamp())
        except _UNREADABLE as exc:
            raise _unreadable(self.key.resource, exc) from None
        objects = self.store.objects
        old = objects.get(compact.uid)
        deleted = kind == "DELETED"
        changes, state = self._detect(self.key.resource, old, compact, deleted=deleted, ctx=self._ctx())
        if deleted:
            objects.pop(compact.uid, None)
        else:
            objects[compact.uid] = state
        self.resource_version = compact.resource_version or self.resource_version
        self.revision += 1
        self._applied_since_list += 1
        self._changes += 1
        if changes:
            self.emit(changes)

    def _ctx(self) -> DetectContext:
        # One context per second of observation: observed_at is only a fallback timestamp,
        # and building it per event showed in the profile (bench #1).
        second = int(time.monotonic())
        if self._ctx_second != second:
            self._ctx_second = second
            self._ctx_cached = DetectContext(
                cluster=self.key.cluster,
                observed_at=self.wallclock(),
                event_repeat_window=self.timing.event_repeat_window,
                rollout_window=self.timing.rollout_window,
                correlation=self.correlation,
            )
        return self._ctx_cached


# What reading a value no apiserver sends can raise (a number beyond int64 in a workload's
# free-form spec, a string where the spec has a map): that object's problem, not a bug.
_UNREADABLE = (TypeError, ValueError, AttributeError, RecursionError, OverflowError)


def _unreadable(resource: str, exc: Exception) -> ServerError:
    return ServerError(f"a {resource} object that cannot be read ({type(exc).__name__}: it does not fit "
                       "the Kubernetes schema)")


def _watch_error(status: Status) -> ApiError:
    code = status.code
    if isinstance(code, str):
        code = int(code) if code.isdigit() and len(code) <= 3 else None
    message = status.message or "watch error"
    if code == 410 or status.reason in ("Expired", "Gone"):
        return Gone(message, status=410)
    if code == 403:
        return Forbidden(message, status=403)
    return ServerError(f"watch ERROR {code}: {message}", status=code)
