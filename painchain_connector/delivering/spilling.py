"""The Outbox's disk half: spill to the spool, checkpoint, refill, adopt a previous run's rows.

`SpoolHalf` is a collaborator the Outbox owns (one per Outbox with a spool). It works on
the queues the Outbox hands it and reports how many events left or entered memory; the
Outbox keeps its own count, so neither reaches into the other's fields. Every method does
blocking sqlite I/O and runs in the housekeeper, a sender, `stop()` or the watch state
flush, never in `put()`. How it fails: an sqlite error is logged and the events stay
where they were (in memory, or on disk for the next start).
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

import gevent

from .._log import logger
from ..metrics import Metrics
from .queues import READY, SPILL_KEEP, SPOOL_CHUNK, _Pending, _Queue
from .spool import Spool


class SpoolHalf:
    def __init__(self, spool: Spool, metrics: Metrics) -> None:
        self.spool = spool
        self._metrics = metrics
        self._garbage: list[int] = []  # seqs of dropped events that still have a row

    def delivered(self, pending: _Pending) -> None:
        try:
            self.spool.delete([pending.seq])
        except sqlite3.Error as exc:  # it will be posted again after a restart: dedupe makes that safe
            _log(pending).error("could not remove a delivered event from the spool: {}", exc)
        self._metrics.spool_size.set(self.spool.pending)

    def dead_letter(self, pending: _Pending, *, status: int | None, reason: str, failed_at: float) -> None:
        try:
            self.spool.add_dead_letter(pending.row(), status=status, reason=reason, failed_at=failed_at)
        except sqlite3.Error as exc:
            _log(pending).error("could not store the dead letter: {}", exc)

    def drop_integrations(self, integration_ids: Iterable[str]) -> None:
        for integration_id in integration_ids:
            try:
                self.spool.delete_integration(integration_id)
            except sqlite3.Error as exc:
                logger.bind(integration=integration_id).error("could not drop spooled events: {}", exc)
        self._metrics.spool_size.set(self.spool.pending)

    def forget(self, seq: int) -> None:
        """An event with a spool row was dropped from memory: delete its row later."""
        self._garbage.append(seq)

    def refill(self, q: _Queue, *, room: int) -> int:
        """Bring up to `room` of q's spooled rows back into memory. Returns how many."""
        try:
            rows = self.spool.load(q.tenant_id, q.integration_id, after=q.cursor, limit=room)
        except sqlite3.Error as exc:
            # The rows stay on disk for the next start; this run carries on without them.
            logger.bind(integration=q.integration_id).error("could not read spooled events: {}", exc)
            rows = []
        for row in rows:
            q.head.append(_Pending(row.outgoing(), row.seq, row.attempts, row.first_seen, in_spool=True))
        q.spooled -= len(rows)
        if rows:
            q.cursor = rows[-1].seq
        if len(rows) < room or q.spooled <= 0:
            q.spooled = 0
            q.head.extend(q.tail)
            q.tail.clear()
        return len(rows)

    def spill(self, queues: dict, *, target: int, in_memory: Callable[[], int],
              moved: Callable[[int], None]) -> None:
        """Move the newest events of the longest queues to the spool until `target` remain
        in memory (`in_memory()`, reported through `moved(n)` as each queue goes)."""
        keep = min(SPILL_KEEP, max(1, target // max(1, len(queues))))
        for q in sorted(queues.values(), key=lambda q: q.in_memory, reverse=True):
            if in_memory() <= target:
                break
            if q.gone:
                continue
            if q.spooled:  # its spooled rows sit between head and tail: the whole tail goes
                taken = list(q.tail)
            else:  # a suffix of head goes, so the disk rows stay newer than memory
                taken = list(q.head)[keep:]
            if not taken or not self.write_rows(taken):
                continue
            if q.spooled:
                q.tail.clear()
            else:
                for _ in taken:
                    q.head.pop()
                q.cursor = taken[0].seq - 1
            q.spooled += len(taken)
            moved(len(taken))
            # Between queues, let the watches and senders run (each queue moved atomically).
            gevent.sleep(0)

    def checkpoint(self, queues: Iterable[_Queue]) -> tuple[int, int]:
        """Make every event in memory durable; they stay queued in memory too, except a
        spilled queue's tail, which joins its rows on disk as a spill does.
        Returns (rows written, events that left memory)."""
        written = left = 0
        for q in list(queues):
            if q.gone:
                continue
            if q.spooled and q.tail:  # newer than the rows on disk: they join them
                taken = list(q.tail)
                if self.write_rows(taken):
                    q.tail.clear()
                    q.spooled += len(taken)
                    left += len(taken)
                    written += len(taken)
            # head (and in flight) are older than the cursor: durable copies are never re-loaded
            fresh = [p for p in ([q.in_flight] if q.in_flight else []) + list(q.head) if not p.in_spool]
            if fresh and self.write_rows(fresh):
                for p in fresh:
                    p.in_spool = True
                written += len(fresh)
        return written, left

    def spool_everything(self, queues: Iterable[_Queue]) -> int:
        """stop(): every event in memory goes to the spool. Returns how many were kept."""
        kept = 0
        for q in list(queues):
            taken = list(q.head) + list(q.tail)
            if taken and self.write_rows(taken):
                kept += len(taken)
                q.head.clear()
                q.tail.clear()
                q.spooled += len(taken)
        return kept

    def write_rows(self, taken: list[_Pending]) -> bool:
        try:
            for start in range(0, len(taken), SPOOL_CHUNK):
                self.spool.put_events([p.row() for p in taken[start:start + SPOOL_CHUNK]])
        except sqlite3.Error as exc:
            logger.error("could not spool {} events: {}", len(taken), exc)
            return False
        self._metrics.spool_size.set(self.spool.pending)
        return True

    def flush_garbage(self) -> None:
        if not self._garbage:
            return
        garbage, self._garbage = self._garbage, []
        try:
            self.spool.delete(garbage)
        except sqlite3.Error as exc:
            logger.error("could not remove {} dropped events from the spool: {}", len(garbage), exc)
        self._metrics.spool_size.set(self.spool.pending)

    # -- start-up -----------------------------------------------------------------------

    def adopt(self) -> tuple[int, list[_Queue]]:
        """What a previous run left in the spool: (next seq, queues to serve first)."""
        queues, pending = [], 0
        for tenant_id, integration_id, rows in self.spool.pending_queues():
            queues.append(_Queue((tenant_id, integration_id), spooled=rows, state=READY))
            pending += rows
        self._metrics.spool_size.set(self.spool.pending)
        if pending:
            logger.info("outbox: {} events from the spool of a previous run will be delivered first", pending)
        return self.spool.last_seq() + 1, queues


def _log(pending: _Pending):
    return logger.bind(integration=pending.item.integration_id, cluster=pending.item.cluster)
