"""The outbox's retry policy: one post attempt, and what its outcome means for the event.

`Attempts` posts the head event of a queue and answers DONE (delivered, duplicate or
dead-lettered), RETRY (hold its queue for a charged backoff, `pause_delay`) or WAIT (the
backend is unavailable: retry once the gate opens). The Outbox's senders own the queues
and their scheduling; this module owns the decisions:

- A backend that is unavailable (502, 503, 504, a timeout, a refused or reset connection)
  closes ONE gate for every sender (backoff with full jitter from `retry_base` to
  `retry_cap`, at least its `Retry-After`) and is not charged to any event: an outage is not
  the event's fault, and giving up on every queued event during one would defeat the spool.
  The gate's backoff restarts after the next success.
- Other transient errors (500: the real backend's answer for a deleted integration or an
  unknown tenant) are the event's: its queue pauses with equal jitter from `charged_base`
  doubling to `charged_cap` (spanning minutes), and it is dead-lettered after
  `max_attempts` of them.
- Either way an event older than `max_age` is dead-lettered; PermanentError dead-letters at
  once; so does a poster exception of any other type (a bug: logged with its traceback).
- Dead letters are counted, logged once (integration, cluster, externalId, never the body)
  and kept in the spool when there is one.

Starts no greenlets; `attempt` runs in a sender's greenlet and blocks on the post.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import gevent
from gevent import GreenletExit

from .._log import logger
from ..backend import PermanentError, TransientError
from ..metrics import Metrics
from ..model import Outgoing
from .queues import _Pending, _Queue
from .spilling import SpoolHalf

DONE, RETRY, WAIT = "done", "retry", "wait"


class Attempts:
    def __init__(
        self,
        *,
        post: Callable[[Outgoing], str],
        metrics: Metrics,
        disk: SpoolHalf | None,
        clock: Callable[[], float],
        rng: Callable[[], float],
        max_attempts: int,
        max_age: float,
        retry_base: float,
        retry_cap: float,
        charged_base: float,
        charged_cap: float,
    ) -> None:
        self._post = post
        self._metrics = metrics
        self._disk = disk
        self._clock = clock
        self._rng = rng
        self._max_attempts = max_attempts
        self._max_age = max_age
        self._retry_base = retry_base  # the "backend unavailable" gate
        self._retry_cap = retry_cap
        self._charged_base = charged_base
        self._charged_cap = charged_cap
        self._gate_until = 0.0  # clock() before which no sender posts (backend unavailable)
        self._gate_failures = 0
        # for the housekeeper's rate-limited warning
        self._retries_unreported = 0
        self._last_retry_message = ""

    def gate_wait(self) -> float:
        """Seconds every sender waits before its next post (<= 0: the gate is open)."""
        return self._gate_until - self._clock()

    def pause_delay(self, failures: int) -> float:
        """How long a queue whose head failed `failures` times in a row is held: equal jitter,
        so an event that keeps failing is retried over minutes, not seconds."""
        ceiling = min(self._charged_cap, self._charged_base * 2 ** max(0, failures - 1))
        return ceiling / 2 + self._rng() * ceiling / 2

    def take_retry_report(self) -> tuple[int, str]:
        """(transient failures since the last call, the last one's message)."""
        count, self._retries_unreported = self._retries_unreported, 0
        return count, self._last_retry_message

    def attempt(self, q: _Queue, pending: _Pending) -> str:
        """Post one event: DONE with it, RETRY it after its queue's pause, or WAIT for the gate.
        A vanished queue (`q.gone`) is never dead-lettered here: the caller drops its event."""
        item = pending.item
        kind = item.kind or "unknown"
        started = time.perf_counter()
        try:
            result = self._post(item)
        except TransientError as exc:
            self._metrics.post_latency.observe(time.perf_counter() - started)
            self._metrics.events_posted.labels(kind, "retry").inc()
            self._retries_unreported += 1
            self._last_retry_message = exc.message
            if not exc.unavailable:
                q.failures += 1
                pending.attempts += 1
            too_old = self._clock() - pending.first_seen >= self._max_age
            if q.gone:
                return RETRY
            if too_old or pending.attempts >= self._max_attempts:
                why = "too old" if too_old else f"{pending.attempts} attempts"
                self.dead_letter(pending, status=exc.status, reason=f"{exc.message} (gave up: {why})")
                q.failures = 0  # the backoff is this event's: the next one starts afresh
                return DONE
            _log(item).debug("retrying {} later: {}", item.external_id, exc.message)
            if exc.unavailable:
                self._close_gate(exc)
                return WAIT
            return RETRY
        except PermanentError as exc:
            self._metrics.post_latency.observe(time.perf_counter() - started)
            pending.attempts += 1
            self.dead_letter(pending, status=exc.status, reason=exc.message)
            return DONE
        except (GreenletExit, gevent.Timeout):
            raise
        except Exception as exc:  # noqa: BLE001 - a poster bug: keep serving the other events
            pending.attempts += 1
            _log(item).opt(exception=True).error("posting {} failed unexpectedly", item.external_id)
            self.dead_letter(pending, status=None, reason=f"unexpected {type(exc).__name__}")
            return DONE
        self._metrics.post_latency.observe(time.perf_counter() - started)
        self._metrics.events_posted.labels(kind, "duplicate" if result == "duplicate" else "stored").inc()
        q.failures = 0
        self._gate_failures = 0
        return DONE

    def dead_letter(self, pending: _Pending, *, status: int | None, reason: str) -> None:
        item = pending.item
        self._metrics.events_posted.labels(item.kind or "unknown", "dead_letter").inc()
        _log(item).warning("event {} dead-lettered: {}", item.external_id, reason)
        if self._disk is not None:
            self._disk.dead_letter(pending, status=status, reason=reason, failed_at=self._clock())

    def _close_gate(self, exc: TransientError) -> None:
        self._gate_failures += 1
        delay = self._rng() * min(self._retry_cap, self._retry_base * 2 ** (self._gate_failures - 1))
        delay = max(delay, exc.retry_after or 0.0)
        self._gate_until = max(self._gate_until, self._clock() + delay)


def _log(item: Outgoing):
    return logger.bind(integration=item.integration_id, cluster=item.cluster)
