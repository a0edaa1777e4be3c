"""The stall probe: tells a quiet watch from a stalled one, per cluster, at a bounded cost.

TCP keepalive (clusters.py) catches a silently dead peer. It cannot catch a live TCP
connection on which nothing flows (a proxy or NAT holding the stream, a wedged apiserver):
the middlebox answers keepalive. Only the application can notice, and a quiet watch and a
stalled one look the same from inside the stream. So, once per `interval`:

- a watch is *quiet* when it received nothing, not even a bookmark, for a whole interval;
- per cluster (one ApiClient, one credential set) with quiet watches, ONE is probed: a
  short watch (timeoutSeconds=1) on its collection from its resourceVersion, on a
  kept-alive connection of that client's pool (no TLS handshake per probe; if that idle
  connection is the one held, the probe hangs and the outcome is the same: interrupt).
  The target is the quiet watch that has applied the most changes (the likeliest to have
  missed some), ties broken by the least recently probed;
- the probe returns changes and the long watch still has not received anything: the long
  watch is stalled. The probe hangs or cannot connect: the path is. Either way every
  quiet watch of that cluster is interrupted (they share the path; resuming one from its
  resourceVersion costs one request, no relist) and reconnects after its backoff;
- the probe returns nothing (or 410: the quiet watch's resourceVersion left the cache
  window, which says nothing about the stream): quiet, nothing to do.

Cost: at most one short request per cluster per interval, and at most `rate` probes a
second in all (clusters beyond that are probed less often: detection slows down, the CPU
does not grow). A watch stalled while its collection changes is noticed within about
2 x interval + timeout. Greenlets: the probe loop (owned by the WatchPool) and a bounded
Pool of probe requests it owns; how it fails: a probe error is counted and logged at DEBUG,
never raised into the loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import gevent
from gevent.pool import Pool

from ._log import logger
from .clusters import ApiError, Gone, Stalled, StreamCut, Unreachable
from .metrics import Metrics
from .watching import Reflector

CHANGES = frozenset({"ADDED", "MODIFIED", "DELETED"})


@dataclass(frozen=True)
class ProbeSettings:
    interval: float = 30.0  # seconds of silence that make a watch quiet; also the round length
    rate: float = 10.0  # probes per second at most, all clusters together
    timeout: float = 10.0  # a probe silent this long means the path is stalled
    concurrency: int = 64  # probes in flight at once


class StallProbe:
    def __init__(
        self,
        *,
        settings: ProbeSettings,
        clusters: Callable[[], dict[str, list[Reflector]]],
        metrics: Metrics,
        sleep: Callable[[float], None] = gevent.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._clusters = clusters  # credential fingerprint -> the reflectors using that client
        self._metrics = metrics
        self._sleep, self._clock = sleep, clock
        self._last_seen: dict[int, tuple[int, float]] = {}  # id(reflector) -> (events seen, since)
        self._probed_at: dict[int, float] = {}
        self._requests = Pool(settings.concurrency)

    def run(self) -> None:
        """Never returns; the WatchPool runs it in a named greenlet and kills it on stop."""
        while True:
            started = self._clock()
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - a bug here must not end stall detection
                logger.opt(exception=exc).error("stall probe round failed: {}", type(exc).__name__)
            self._sleep(max(0.0, self.settings.interval - (self._clock() - started)))

    def run_once(self) -> int:
        """One round: pick a target per cluster, probe them paced to `rate`. Returns how many."""
        picked = self.targets()
        for target, quiet in picked:
            self._requests.spawn(self.probe, target, quiet)
            self._sleep(1.0 / self.settings.rate)
        return len(picked)

    def stop(self) -> None:
        self._requests.kill(block=True, timeout=2)

    def targets(self) -> list[tuple[Reflector, list[Reflector]]]:
        now = self._clock()
        alive: set[int] = set()
        picked = []
        for reflectors in self._clusters().values():
            quiet = []
            for r in reflectors:
                alive.add(id(r))
                seen = r.events_seen
                last = self._last_seen.get(id(r))
                if r.state != "watching" or last is None or last[0] != seen:
                    self._last_seen[id(r)] = (seen, now)
                elif now - last[1] >= self.settings.interval:
                    quiet.append(r)
            if quiet:
                target = max(quiet, key=lambda r: (r.changes_applied, -self._probed_at.get(id(r), 0.0)))
                self._probed_at[id(target)] = now
                picked.append((target, quiet))
        for gone in [k for k in self._last_seen if k not in alive]:
            self._last_seen.pop(gone, None)
            self._probed_at.pop(gone, None)
        return picked

    def probe(self, target: Reflector, quiet: Iterable[Reflector]) -> str:
        """Probe one quiet watch; interrupt the cluster's quiet watches if it is stalled."""
        seen, rv = target.events_seen, target.resource_version
        if rv is None or target.state != "watching":
            return self._count("skipped")
        try:
            changes = self._short_watch(target, rv)
        except Gone:
            return self._count("inconclusive")
        except (Stalled, Unreachable, StreamCut) as exc:
            return self._interrupt(quiet, "path_stalled",
                                   f"stalled: a probe of this cluster failed ({exc}); reconnecting")
        except ApiError as exc:
            target.log.debug("stall probe failed: {}", exc)
            return self._count("error")
        if changes and target.events_seen == seen and target.state == "watching":
            return self._interrupt(quiet, "stalled",
                                   f"stalled: a probe saw {changes} change(s) this watch has not delivered")
        return self._count("quiet")

    def _short_watch(self, target: Reflector, rv: str) -> int:
        stream = target.lw.watch(resource_version=rv, timeout_seconds=1, read_timeout=self.settings.timeout)
        changes = 0
        for event in stream:
            kind = event.type
            if kind in CHANGES:
                changes += 1
            elif kind == "ERROR":
                code = getattr(event.object, "code", None)
                if code == 410:
                    raise Gone("probe: resource version too old", status=410)
                raise StreamCut(f"probe: watch ERROR {code}")
        return changes

    def _interrupt(self, quiet: Iterable[Reflector], outcome: str, why: str) -> str:
        interrupted = [r for r in quiet if r.interrupt(why)]
        if interrupted:
            interrupted[0].log.warning("{}: {} quiet watch(es) of this cluster interrupted", why, len(interrupted))
        return self._count(outcome)

    def _count(self, outcome: str) -> str:
        self._metrics.stall_probes.labels(outcome).inc()
        return outcome
