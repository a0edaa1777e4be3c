"""Local mode's poster: PainChain events as JSON lines on a stream or a file.

`JsonLinesSink.post(item)` has the backend client's shape, so local mode uses the same
Outbox (order, bound, drain) with this in place of `BackendClient`. Starts no greenlets.

A line is the event's payload as posted (UTF-8 JSON); a stream that cannot encode one of
its characters (stdout in an ASCII locale) gets the same document with it escaped. Each
event is written and flushed in one call that does not yield to gevent, so lines from
concurrent senders never interleave. A write error (disk full, closed pipe) raises
TransientError: the outbox retries it a bounded number of times, then dead-letters it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from ..backend import TransientError
from ..model import Outgoing


class JsonLinesSink:
    def __init__(self, target: TextIO | str | Path) -> None:
        if isinstance(target, (str, Path)):
            self._stream: TextIO = open(target, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
            self._owned = True
        else:
            self._stream = target
            self._owned = False

    def post(self, item: Outgoing) -> str:
        line = item.payload.decode() + "\n"
        try:
            try:
                self._stream.write(line)
            except UnicodeEncodeError:  # e.g. stdout in an ASCII locale; nothing was written yet
                self._stream.write(json.dumps(json.loads(line)) + "\n")
            self._stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: write to a closed file
            raise TransientError(f"sink write failed: {type(exc).__name__}") from None
        return "stored"

    def close(self) -> None:
        if self._owned:
            self._stream.close()
