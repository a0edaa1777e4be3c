"""The outbox's queue records: one event waiting for delivery, one (tenant, integration) FIFO.

Plain data; the Outbox (outbox.py) and its spool half (spilling.py) own the behaviour.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..model import Outgoing
from .spool import SpoolRow

Key = tuple  # (tenant_id | None, integration_id)

IDLE, READY, BUSY, PAUSED = "idle", "ready", "busy", "paused"
LOAD_BATCH = 256  # spooled rows brought back into memory per refill
SPILL_KEEP = 16  # events a spilled queue keeps in memory so its sender has work at once
SPOOL_CHUNK = 500  # rows per spool transaction


@dataclass(eq=False)
class _Pending:
    item: Outgoing
    seq: int
    attempts: int
    first_seen: float
    in_spool: bool = False  # a spool row with this seq exists

    def row(self) -> SpoolRow:
        return SpoolRow.of(self.item, seq=self.seq, attempts=self.attempts, first_seen=self.first_seen)


@dataclass(eq=False)
class _Queue:
    """One (tenant, integration) FIFO. Memory holds `head` (older than any spooled row of
    this queue) and `tail` (newer); `spooled` rows with seq > `cursor` sit on disk between
    them. Invariant: spooled == 0 implies tail is empty."""

    key: Key
    head: deque = field(default_factory=deque)
    tail: deque = field(default_factory=deque)
    spooled: int = 0
    cursor: int = 0
    state: str = IDLE
    gone: bool = False
    failures: int = 0  # consecutive transient failures: drives this queue's backoff
    in_flight: _Pending | None = None  # the event a sender is posting right now

    @property
    def tenant_id(self) -> str | None:
        return self.key[0]

    @property
    def integration_id(self) -> str:
        return self.key[1]

    @property
    def in_memory(self) -> int:
        return len(self.head) + len(self.tail)

    def has_work(self) -> bool:
        return bool(self.head or self.tail or self.spooled)
