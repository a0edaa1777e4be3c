"""Delivery: the outbox (queues, senders, retry, memory bound), the spool and local sinks.

See `outbox` for the promises (order, fairness, bounded retries, bounded memory, drain),
`spool` for what survives a restart, `sinks` for local mode.
"""
from .outbox import Outbox
from .sinks import JsonLinesSink
from .spool import DeadLetter, Spool, SpoolRow

__all__ = ["DeadLetter", "JsonLinesSink", "Outbox", "Spool", "SpoolRow"]
