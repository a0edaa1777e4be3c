"""The Outbox's spool half: spill to disk, checkpoint, refill, adopt a previous run's rows.

A mixin of `Outbox` (it shares the Outbox's queues and counters and is not used alone),
split out so each module stays one readable responsibility. Every method here does
blocking sqlite I/O and runs in the housekeeper, a sender, `stop()` or the watch state
flush, never in `put()`.
"""
from __future__ import annotations

import sqlite3

import gevent

from .._log import logger
from .queues import LOAD_BATCH, READY, SPILL_KEEP, SPOOL_CHUNK, _Pending, _Queue
from .spool import Spool


class SpoolingMixin:
    def _refill(self, q: _Queue) -> None:
        assert self._spool is not None
        # Load no further than where spilling starts, or the housekeeper writes it right back.
        room = max(1, min(LOAD_BATCH, self._spill_high - self._count))
        try:
            rows = self._spool.load(q.tenant_id, q.integration_id, after=q.cursor, limit=room)
        except sqlite3.Error as exc:
            # The rows stay on disk for the next start; this run carries on without them.
            logger.bind(integration=q.integration_id).error("could not read spooled events: {}", exc)
            rows = []
        for row in rows:
            q.head.append(_Pending(row.outgoing(), row.seq, row.attempts, row.first_seen, in_spool=True))
        self._count += len(rows)
        q.spooled -= len(rows)
        if rows:
            q.cursor = rows[-1].seq
        if len(rows) < room or q.spooled <= 0:
            q.spooled = 0
            q.head.extend(q.tail)
            q.tail.clear()
        self._after_count_change()

    def _spill(self, target: int) -> None:
        """Move the newest events of the longest queues to the spool until `target` remain."""
        assert self._spool is not None
        keep = min(SPILL_KEEP, max(1, target // max(1, len(self._queues))))
        for q in sorted(self._queues.values(), key=lambda q: q.in_memory, reverse=True):
            if self._count <= target:
                break
            if q.gone:
                continue
            if q.spooled:  # its spooled rows sit between head and tail: the whole tail goes
                taken = list(q.tail)
            else:  # a suffix of head goes, so the disk rows stay newer than memory
                taken = list(q.head)[keep:]
            if not taken or not self._write_rows(taken):
                continue
            if q.spooled:
                q.tail.clear()
            else:
                for _ in taken:
                    q.head.pop()
                q.cursor = taken[0].seq - 1
            q.spooled += len(taken)
            self._count -= len(taken)
            # Between queues, let the watches and senders run (each queue moved atomically).
            gevent.sleep(0)
        self._after_count_change()

    def checkpoint(self) -> int:
        """Make every event in memory durable in the spool; they stay queued in memory too.

        The watch engine calls this right before it persists its Stores, so a crash (even
        SIGKILL) never leaves a persisted Store ahead of the events it produced: what is
        neither spooled nor in a persisted Store is re-detected by the diff after restart.
        Returns how many rows were written. No-op without a spool."""
        if self._spool is None:
            return 0
        written = 0
        for q in list(self._queues.values()):
            if q.gone:
                continue
            if q.spooled and q.tail:  # newer than the rows on disk: they join them, as a spill does
                taken = list(q.tail)
                if self._write_rows(taken):
                    q.tail.clear()
                    q.spooled += len(taken)
                    self._count -= len(taken)
                    written += len(taken)
            # head (and in flight) are older than the cursor: durable copies are never re-loaded
            fresh = [p for p in ([q.in_flight] if q.in_flight else []) + list(q.head) if not p.in_spool]
            if fresh and self._write_rows(fresh):
                for p in fresh:
                    p.in_spool = True
                written += len(fresh)
        self._after_count_change()
        return written

    def _spool_everything(self) -> int:
        """stop(): every event in memory goes to the spool. Returns how many were kept."""
        kept = 0
        for q in list(self._queues.values()):
            taken = list(q.head) + list(q.tail)
            if taken and self._write_rows(taken):
                kept += len(taken)
                q.head.clear()
                q.tail.clear()
                q.spooled += len(taken)
        self._count -= kept
        return kept

    def _write_rows(self, taken: list[_Pending]) -> bool:
        assert self._spool is not None
        try:
            for start in range(0, len(taken), SPOOL_CHUNK):
                self._spool.put_events([p.row() for p in taken[start:start + SPOOL_CHUNK]])
        except sqlite3.Error as exc:
            logger.error("could not spool {} events: {}", len(taken), exc)
            return False
        self._metrics.spool_size.set(self._spool.pending)
        return True

    def _flush_spool_garbage(self) -> None:
        if self._spool is None or not self._spool_garbage:
            return
        garbage, self._spool_garbage = self._spool_garbage, []
        try:
            self._spool.delete(garbage)
        except sqlite3.Error as exc:
            logger.error("could not remove {} dropped events from the spool: {}", len(garbage), exc)
        self._metrics.spool_size.set(self._spool.pending)

    # -- start-up -----------------------------------------------------------------------

    def _adopt_spool(self, spool: Spool) -> None:
        """Queue what a previous run left in the spool, ahead of anything put from now on."""
        self._next_seq = spool.last_seq() + 1
        pending = 0
        for tenant_id, integration_id, rows in spool.pending_queues():
            q = _Queue((tenant_id, integration_id), spooled=rows, state=READY)
            self._queues[q.key] = q
            self._ready.put_nowait(q)
            pending += rows
        self._metrics.spool_size.set(spool.pending)
        if pending:
            logger.info("outbox: {} events from the spool of a previous run will be delivered first", pending)
