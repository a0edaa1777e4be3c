"""The outbox: detected events in, posts to the backend (or a local sink) out.

Owns per-(tenant, integration) FIFO queues, the bounded set of sender greenlets that
serve them round-robin, the retry timers and a housekeeper. Its retry policy (what a post's
outcome means) is an `Attempts` (attempts.py) it owns; with a `Spool`, its disk half is a
`SpoolHalf` (spilling.py) it owns and hands queues to.

Promises:
- `put()` never blocks and never does I/O: watch greenlets call it.
- Order: one integration's events are posted in the order they were put. A queue is
  held by at most one sender at a time, and while its head event waits for a retry the
  queue is paused; every other queue keeps flowing.
- Fairness: ready queues are served one event per turn, round-robin, so one
  integration's storm or one tenant's failing backend cannot starve the others.
- Retries (attempts.py, the policy): a backend that is unavailable pauses ALL delivery
  behind one gate and is charged to no event; other transient errors pause the event's
  queue with a backoff spanning minutes (`settings.retry_initial` to `settings.retry_max`)
  and dead-letter it after `max_attempts`; an event older than `max_event_age` or refused
  permanently is dead-lettered. Dead letters are kept in the spool when there is one.
- Bound: at most `outbox_max` events in memory (in flight included). Without a spool
  the oldest event of the longest queue is dropped (the storm pays, not its quiet
  neighbours); with a spool the housekeeper moves the newest events of the longest
  queues to disk from outbox_max/2 on, and they come back in order when their queue
  reaches them (the hard bound still drops if a burst outruns the housekeeper).
- `stop(timeout)` drains, then spools what is left (or reports how many were lost).
- On construction, events left in the spool by a previous run are queued first.

Greenlets (all in groups this object owns, all stopped by `stop()`):
`outbox-sender-N` (settings.senders of them), `outbox-housekeeper`, and one short-lived
`outbox-retry` timer per paused queue.

How it fails: a poster exception other than Transient/PermanentError is logged with its
traceback and the event dead-lettered (attempts.py); a spool error is logged and the events
stay in memory (subject to the memory bound).
"""
from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent import Greenlet, GreenletExit
from gevent.event import Event
from gevent.pool import Group
from gevent.queue import Queue
from .._log import logger
from ..metrics import Metrics
from ..model import Outgoing
from ..settings import Settings
from .attempts import DONE, WAIT, Attempts
from .queues import BUSY, IDLE, LOAD_BATCH, PAUSED, READY, Key, _Pending, _Queue
from .spilling import SpoolHalf
from .spool import Spool


class Outbox:
    def __init__(
        self,
        *,
        poster: Any,
        settings: Settings,
        metrics: Metrics | None = None,
        spool: Spool | None = None,
        sleep: Callable[[float], Any] = gevent.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        retry_base: float = 0.5,
        retry_cap: float = 30.0,
        charged_base: float | None = None,
        charged_cap: float | None = None,
        warn_interval: float = 10.0,
    ) -> None:
        # `poster` is an object with post(item) -> "stored" | "duplicate" (BackendClient,
        # JsonLinesSink), or that callable itself.
        post: Callable[[Outgoing], str] = poster.post if hasattr(poster, "post") else poster
        self._senders_n = settings.senders
        self._max = settings.outbox_max
        self._metrics = metrics if metrics is not None else Metrics()
        self._spool = spool
        self._sleep = sleep
        self._clock = clock
        self._warn_interval = warn_interval
        self._drain_timeout = settings.drain_timeout
        # With a spool, the housekeeper spills from half the bound down to a quarter, so a
        # burst of outbox_max/2 events put without yielding still fits before the hard bound.
        self._spill_high = max(1, self._max // 2)
        self._spill_low = self._max // 4

        self._queues: dict[Key, _Queue] = {}
        self._ready: Queue = Queue()  # of _Queue, unbounded: put_nowait never blocks
        self._count = 0  # events in memory, in flight included
        self._drained = Event()
        self._drained.set()
        self._wake = Event()  # housekeeper: spill or report
        self._senders = Group()
        self._timers = Group()
        self._housekeeper: Greenlet | None = None
        self._state = "new"
        # reported by the housekeeper, at most once per warn_interval
        self._overflow_unreported = 0
        self._last_report = float("-inf")
        self._disk = SpoolHalf(spool, self._metrics) if spool is not None else None
        self._attempts = Attempts(
            post=post, metrics=self._metrics, disk=self._disk, clock=clock, rng=rng,
            max_attempts=settings.max_attempts, max_age=settings.max_event_age, retry_base=retry_base,
            retry_cap=retry_cap, charged_base=settings.retry_initial if charged_base is None else charged_base,
            charged_cap=settings.retry_max if charged_cap is None else charged_cap,
        )

        self._next_seq = 1
        if self._disk is not None:
            self._next_seq, adopted = self._disk.adopt()
            for q in adopted:
                self._queues[q.key] = q
                self._ready.put_nowait(q)

    # -- the watch side: never blocks, never does I/O -----------------------------------

    def put(self, item: Outgoing) -> None:
        if self._state == "stopped":
            self._metrics.events_dropped.labels("shutdown").inc()
            return
        key = (item.tenant_id, item.integration_id)
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = _Queue(key)
        if self._count >= self._max and not self._make_room(q):
            self._count_overflow(1)
            if q.state == IDLE and not q.has_work():
                del self._queues[key]
            return
        pending = _Pending(item, self._next_seq, 0, self._clock())
        self._next_seq += 1
        (q.tail if q.spooled else q.head).append(pending)
        self._count += 1
        self._metrics.outbox_depth.set(self._count)
        self._drained.clear()
        if q.state == IDLE:
            q.state = READY
            self._ready.put_nowait(q)
        if self._spool is not None and self._count > self._spill_high:
            self._wake.set()

    @property
    def running(self) -> bool:
        """Started, not stopping, and every sender and the housekeeper alive."""
        return self._state == "running" and len(self._senders) == self._senders_n + 1

    @property
    def depth(self) -> int:
        """Events in memory, in flight included (spooled rows are not counted)."""
        return self._count

    def retain_integrations(self, ids: Iterable[str]) -> int:
        """Drop the queued events of every integration not in `ids` (it left the backend's
        list: its events would only earn 500s). Returns how many queued events (memory and
        spool) were dropped. An event in flight finishes its attempt and is not retried
        (it is counted as dropped then, if that attempt fails)."""
        keep = set(ids)
        dropped = 0
        gone: list[_Queue] = [q for q in self._queues.values() if q.integration_id not in keep]
        for q in gone:
            del self._queues[q.key]
            q.gone = True
            dropped += q.in_memory + q.spooled
            self._count -= q.in_memory
            q.head.clear()
            q.tail.clear()
            q.spooled = 0
        if self._disk is not None:
            self._disk.drop_integrations({q.integration_id for q in gone})
        self._after_count_change()
        if dropped:
            self._metrics.events_dropped.labels("integration_gone").inc(dropped)
            logger.info("dropped {} queued events of {} integrations no longer in the backend's list",
                        dropped, len({q.integration_id for q in gone}))
        return dropped

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._state != "new":
            return
        self._state = "running"
        for index in range(self._senders_n):
            sender = Greenlet(self._run_forever, self._send_once, f"outbox-sender-{index}")
            sender.name = f"outbox-sender-{index}"
            self._senders.start(sender)
        housekeeper = Greenlet(self._run_forever, self._housekeep_once, "outbox-housekeeper")
        housekeeper.name = "outbox-housekeeper"
        self._housekeeper = housekeeper
        self._senders.start(housekeeper)

    def stop(self, timeout: float | None = None) -> int:
        """Deliver for up to `timeout` seconds (default settings.drain_timeout), stop every
        greenlet, then move what is left to the spool. Returns how many events were lost
        (0 when a spool took them). The spool is not closed: its owner closes it."""
        if self._state == "stopped":
            return 0
        if self._state == "running":
            self._state = "stopping"
            self._drained.wait(self._drain_timeout if timeout is None else timeout)
            self._timers.kill(block=True, timeout=2)
            self._senders.kill(block=True, timeout=5)
            for greenlet in self._senders:
                logger.error("outbox greenlet {} did not stop", getattr(greenlet, "name", greenlet))
        self._state = "stopped"
        left = self._count
        lost = left
        if left and self._disk is not None:
            self._count -= self._disk.spool_everything(self._queues.values())
            lost = self._count
            if not lost:
                logger.info("outbox stopped: {} undelivered events kept in the spool for the next start", left)
        if self._disk is not None:
            self._disk.flush_garbage()
        if lost:
            self._metrics.events_dropped.labels("shutdown").inc(lost)
            logger.warning("outbox stopped with {} undelivered events lost", lost)
        self._count -= lost
        self._queues.clear()
        self._after_count_change()
        return lost

    def _run_forever(self, once: Callable[[], Any], name: str) -> None:
        """The guard every outbox greenlet runs under: one failed iteration is logged with its
        traceback and the loop goes on (each iteration blocks first, so it cannot spin)."""
        try:
            while True:
                try:
                    once()
                except (GreenletExit, gevent.Timeout):
                    raise
                except Exception:  # noqa: BLE001 - the guard: log with traceback, keep serving
                    logger.exception("outbox greenlet {}: iteration failed", name)
        finally:
            if self._state == "running":
                logger.error("outbox greenlet {} ended while the outbox is running", name)

    # -- senders ------------------------------------------------------------------------

    def _send_once(self) -> None:
        q: _Queue = self._ready.get()
        if q.gone or q.state != READY:
            return
        wait = self._attempts.gate_wait()
        if wait > 0:  # the backend is unavailable: every sender waits, nobody is charged
            self._sleep(wait)
            if q.gone or q.state != READY:
                return
        q.state = BUSY
        try:
            self._serve(q)
        except Exception:
            if q.state == BUSY:  # our bug, not the event's: back off rather than wedge the queue
                q.failures += 1
                self._pause(q)
            raise

    def _serve(self, q: _Queue) -> None:
        pending = self._take(q)
        if pending is None:
            self._release(q)
            return
        q.in_flight = pending
        try:
            outcome = self._attempts.attempt(q, pending)
        except GreenletExit:
            q.in_flight = None
            # stop() killed us mid-post: keep the event where it was, for the spool.
            if q.gone:
                self._finish(pending, dropped_because_gone=True)
            else:
                q.head.appendleft(pending)
            q.state = IDLE
            raise
        q.in_flight = None
        if outcome != DONE and not q.gone:
            q.head.appendleft(pending)
            if outcome == WAIT:
                self._release(q)  # ready again at once; the gate holds every sender
            else:
                self._pause(q)
            return
        self._finish(pending, dropped_because_gone=outcome != DONE)
        self._release(q)

    def _pause(self, q: _Queue) -> None:
        """Hold the queue (its head waits for a retry) for the policy's backoff."""
        q.state = PAUSED
        timer = Greenlet(self._resume_later, q, self._attempts.pause_delay(q.failures))
        timer.name = "outbox-retry"
        self._timers.start(timer)

    def _take(self, q: _Queue) -> _Pending | None:
        """The next event of a queue (still counted in memory while in flight)."""
        if not q.head and q.spooled:
            # Load no further than where spilling starts, or the housekeeper writes it right back.
            self._count += self._disk.refill(q, room=max(1, min(LOAD_BATCH, self._spill_high - self._count)))
            self._after_count_change()
        elif not q.head and q.tail:  # cannot happen while the invariant holds; stay safe
            q.head, q.tail = q.tail, deque()
        return q.head.popleft() if q.head else None

    def _finish(self, pending: _Pending, *, dropped_because_gone: bool) -> None:
        if dropped_because_gone:
            self._metrics.events_dropped.labels("integration_gone").inc()
        self._count -= 1  # retain_integrations() never subtracts the event in flight
        if pending.in_spool and self._disk is not None:
            self._disk.delivered(pending)

    def _release(self, q: _Queue) -> None:
        if q.gone:
            q.state = IDLE
        elif q.has_work():
            q.state = READY
            self._ready.put_nowait(q)  # to the back: round-robin
        else:
            q.state = IDLE
            if self._queues.get(q.key) is q:
                del self._queues[q.key]
        self._after_count_change()

    def _resume_later(self, q: _Queue, delay: float) -> None:
        self._sleep(delay)
        if q.state == PAUSED and not q.gone:
            q.state = READY
            self._ready.put_nowait(q)

    def _after_count_change(self) -> None:
        self._metrics.outbox_depth.set(self._count)
        if self._count <= 0:
            self._drained.set()
        else:
            self._drained.clear()

    # -- memory bound -------------------------------------------------------------------

    def _make_room(self, incoming: _Queue) -> bool:
        """Drop the oldest queued event of the longest queue. False if nothing is droppable
        (every event in memory is in flight): then the incoming event is the one dropped."""
        victim = incoming
        if incoming.in_memory * len(self._queues) < self._count:  # below its fair share: find the hog
            victim = max(self._queues.values(), key=lambda q: q.in_memory)
        if not victim.in_memory:
            return False
        dropped = victim.head.popleft() if victim.head else victim.tail.popleft()
        if dropped.in_spool:
            self._disk.forget(dropped.seq)
        self._count -= 1
        self._count_overflow(1)
        return True

    def _left_memory(self, n: int) -> None:
        self._count -= n

    def checkpoint(self) -> int:
        """Make every event in memory durable (SpoolHalf.checkpoint); rows written, 0
        without a spool. The watch engine calls it right before it persists its Stores,
        so a crash (even SIGKILL) never leaves a Store ahead of the events it produced."""
        if self._disk is None:
            return 0
        written, left = self._disk.checkpoint(self._queues.values())
        self._count -= left
        self._after_count_change()
        return written

    def _count_overflow(self, n: int) -> None:
        self._metrics.events_dropped.labels("overflow").inc(n)
        self._overflow_unreported += n
        self._wake.set()

    # -- housekeeper: spill to disk, rate-limited warnings -------------------------------

    def _housekeep_once(self) -> None:
        self._wake.wait(self._warn_interval)
        self._wake.clear()
        if self._disk is not None:
            if self._count > self._spill_high:
                self._disk.spill(self._queues, target=self._spill_low, in_memory=lambda: self._count,
                                 moved=self._left_memory)
                self._after_count_change()
            self._disk.flush_garbage()
        now = self._clock()
        if now - self._last_report < self._warn_interval:
            return
        if self._overflow_unreported:
            logger.warning("outbox full ({} events): dropped the {} oldest queued events", self._max,
                           self._overflow_unreported)
            self._overflow_unreported = 0
            self._last_report = now
        retries, last_message = self._attempts.take_retry_report()
        if retries:
            logger.warning("{} event posts failed transiently and will be retried (last: {})", retries, last_message)
            self._last_report = now
